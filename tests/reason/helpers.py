"""Shared helpers for the reasoning-engine tests: scripted backends with per-call patches and faults."""

from __future__ import annotations

import asyncio
import json

from mythos.reason import EngineConfig, ScriptedBackend
from mythos.reason.calls import CallPolicy
from mythos.reason.canned import canned_reply
from mythos.reason.engine import Engine
from mythos.reason.scripted import Fault, ScriptedRequest

Q_PIVOT = (
    "Our startup has 3 months of runway and our product has good reviews but declining retention. "
    "Pivot or stay?"
)
Q_ETHICS = "Is it ethical to train AI on public web data without consent?"
Q_SQLITE = "Should I use SQLite or PostgreSQL for a single-user desktop app?"
Q_GENERIC = "Should we adopt Conventional Commits for our team repository?"


def _matches(key: str, tag: str) -> bool:
    return key == tag or (key.endswith("*") and tag.startswith(key[:-1]))


def responder(patches: dict[str, dict] | None = None, faults: dict[str, Fault | list] | None = None):
    """Canned replies, with JSON fields overridden per tag (``patches``) or replaced by faults."""
    patches, faults = patches or {}, faults or {}

    def respond(request: ScriptedRequest):
        for key, fault in faults.items():
            if _matches(key, request.tag):
                if isinstance(fault, list):
                    if request.attempt <= len(fault) and fault[request.attempt - 1] is not None:
                        return fault[request.attempt - 1]
                else:
                    return fault
        data = json.loads(canned_reply(request.tag, request.messages))
        for key, patch in patches.items():
            if _matches(key, request.tag):
                data.update(patch)
        return json.dumps(data)

    return respond


def fast_config(**overrides) -> EngineConfig:
    policy = CallPolicy(
        call_deadline_s=overrides.pop("call_deadline_s", 2.0),
        attempt_timeout_s=overrides.pop("attempt_timeout_s", 1.0),
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        max_retries=overrides.pop("max_retries", 2),
    )
    overrides.setdefault("run_deadline_s", 20.0)
    overrides.setdefault("packets", False)
    return EngineConfig(policy=policy, **overrides)


def run(invocation: str, *, patches=None, faults=None, latency=0.0, backend=None, **config):
    backend = backend or ScriptedBackend(responder(patches, faults), latency=latency)
    record = asyncio.run(Engine(backend, fast_config(**config)).run(invocation))
    return record, backend
