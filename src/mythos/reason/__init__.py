"""The reasoning engine: Prelude → lens rounds or parallel subagents → Coda, over real LLM backends.

Library use mirrors the command line::

    from mythos.reason import EngineConfig, ScriptedBackend, think_sync
    record = think_sync("trace Should we adopt Conventional Commits?", ScriptedBackend())
    print(record.rendered)
"""

from mythos.reason.backends import AnthropicBackend, BackendError, OpenAIBackend
from mythos.reason.calls import CallPolicy
from mythos.reason.engine import Engine, EngineConfig, think, think_sync
from mythos.reason.record import RunRecord
from mythos.reason.routing import EmptyQuestion, parse_invocation
from mythos.reason.scripted import Fault, ReplayBackend, ScriptedBackend
from mythos.reason.strategies import StrategyResult, self_consistency
from mythos.reason.vocab import HaltReason, Mode, Outcome
from mythos.reason.vote import Vote, extract_answer, tally

__all__ = [
    "AnthropicBackend",
    "BackendError",
    "CallPolicy",
    "EmptyQuestion",
    "Engine",
    "EngineConfig",
    "Fault",
    "HaltReason",
    "Mode",
    "Outcome",
    "ReplayBackend",
    "StrategyResult",
    "Vote",
    "extract_answer",
    "OpenAIBackend",
    "RunRecord",
    "ScriptedBackend",
    "parse_invocation",
    "self_consistency",
    "tally",
    "think",
    "think_sync",
]
