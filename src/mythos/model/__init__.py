"""The Recurrent-Depth Transformer: pure nn.Modules (see docs/model-api.md for the contract).

Names are imported on first use, so config, presets and parameter arithmetic (``mythos model info``) load
without torch; touching ``Mythos`` or any other module-backed name imports what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "CacheFullError": "cache",
    "KVCache": "cache",
    "load_checkpoint": "checkpoint",
    "read_config": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ConfigError": "config",
    "MythosConfig": "config",
    "generate": "generate",
    "LoopAux": "model",
    "Mythos": "model",
    "MythosOutput": "model",
    "PRESETS": "presets",
    "REFERENCE_PRESETS": "presets",
    "get_preset": "presets",
    "convert_open_mythos": "reference",
    "from_open_mythos": "reference",
}

__all__ = [
    "CacheFullError",
    "ConfigError",
    "KVCache",
    "LoopAux",
    "Mythos",
    "MythosConfig",
    "MythosOutput",
    "PRESETS",
    "REFERENCE_PRESETS",
    "convert_open_mythos",
    "from_open_mythos",
    "generate",
    "get_preset",
    "load_checkpoint",
    "read_config",
    "save_checkpoint",
]
assert set(__all__) == set(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mythos.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from .cache import CacheFullError, KVCache
    from .checkpoint import load_checkpoint, read_config, save_checkpoint
    from .config import ConfigError, MythosConfig
    from .generate import generate
    from .model import LoopAux, Mythos, MythosOutput
    from .presets import PRESETS, REFERENCE_PRESETS, get_preset
    from .reference import convert_open_mythos, from_open_mythos
