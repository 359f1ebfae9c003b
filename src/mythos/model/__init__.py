"""The Recurrent-Depth Transformer: pure nn.Modules (see docs/model-api.md for the contract)."""

from .cache import CacheFullError, KVCache
from .checkpoint import load_checkpoint, read_config, save_checkpoint
from .config import ConfigError, MythosConfig
from .generate import generate
from .model import LoopAux, Mythos, MythosOutput
from .presets import PRESETS, REFERENCE_PRESETS, get_preset
from .reference import convert_open_mythos, from_open_mythos

__all__ = [
    "PRESETS",
    "REFERENCE_PRESETS",
    "CacheFullError",
    "ConfigError",
    "KVCache",
    "LoopAux",
    "Mythos",
    "MythosConfig",
    "MythosOutput",
    "convert_open_mythos",
    "from_open_mythos",
    "generate",
    "get_preset",
    "load_checkpoint",
    "read_config",
    "save_checkpoint",
]
