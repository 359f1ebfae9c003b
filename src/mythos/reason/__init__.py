"""The reasoning engine: Prelude → lens rounds or parallel subagents → Coda, over real LLM backends.

Library use mirrors the command line::

    from mythos.reason import EngineConfig, ScriptedBackend, think_sync
    record = think_sync("trace Should we adopt Conventional Commits?", ScriptedBackend())
    print(record.rendered)
"""

from mythos.reason.backends import AnthropicBackend, BackendError, Fault, OpenAIBackend, ScriptedBackend
from mythos.reason.calls import CallPolicy
from mythos.reason.engine import Engine, EngineConfig, think, think_sync
from mythos.reason.record import RunRecord
from mythos.reason.routing import EmptyQuestion, parse_invocation

__all__ = [
    "AnthropicBackend",
    "BackendError",
    "CallPolicy",
    "EmptyQuestion",
    "Engine",
    "EngineConfig",
    "Fault",
    "OpenAIBackend",
    "RunRecord",
    "ScriptedBackend",
    "parse_invocation",
    "think",
    "think_sync",
]
