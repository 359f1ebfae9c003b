"""The Recurrent-Depth Transformer: pure nn.Modules (see docs/model-api.md for the contract)."""

from .cache import CacheFullError, KVCache
from .config import ConfigError, MythosConfig
from .model import LoopAux, Mythos, MythosOutput
from .presets import PRESETS, REFERENCE_PRESETS, get_preset

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
    "get_preset",
]
