"""Property: whatever the backend does, call by call, a run ends with an answer and an honest footer."""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mythos.reason.engine import HALTING_REASONS
from mythos.reason.scripted import Fault

from .helpers import Q_ETHICS, Q_GENERIC, Q_PIVOT, run

FAULTS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            Fault("http_5xx"),
            Fault("http_429"),
            Fault("http_4xx"),
            Fault("connection"),
            Fault("garbage"),
            Fault("empty"),
            Fault("hang"),
            Fault("text", "<html>502</html>"),
            Fault("text", "Sure, happy to help."),
            Fault("text", '{"unexpected": true}'),
            Fault("text", "```json\n{broken\n```"),
        ]
    ),
)
TAGS = [
    "prelude",
    "round:1:*",
    "round:2:*",
    "round:3:*",
    "sub:A:*",
    "sub:B:*",
    "sub:C:*",
    "sub:D:*",
    "recovery:*",
    "merge",
    "coda",
    "direct",
]
FOOTER = re.compile(
    r"^\*Depth: \d+ (rounds?|latent passes|parallel subagents (merged|dispatched, not merged))[^\n]*Mode: [^\n]+\*$",
    re.MULTILINE,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    invocation=st.sampled_from(
        [
            f"trace {Q_GENERIC}",
            Q_GENERIC,
            f"deep {Q_ETHICS}",
            f"quick {Q_PIVOT}",
            "What is 2+2?",
            f"deep {Q_GENERIC}",
        ]
    ),
    faults=st.dictionaries(st.sampled_from(TAGS), st.lists(FAULTS, min_size=1, max_size=4), max_size=6),
    max_tokens=st.one_of(st.none(), st.integers(200, 3000)),
)
def test_any_fault_script_ends_with_answer_and_footer(invocation, faults, max_tokens):
    rec, backend = run(
        invocation,
        faults=faults,
        max_tokens=max_tokens,
        run_deadline_s=3.0,
        call_deadline_s=0.3,
        attempt_timeout_s=0.1,
        max_retries=1,
    )
    assert rec.coda.get("final_answer")
    assert rec.rendered.rstrip().endswith(rec.footer.rstrip())
    assert FOOTER.search(rec.footer) or rec.route.get("final_mode") == "none"
    if rec.coda.get("fallback"):
        assert "*Fallbacks:" in rec.footer
    # bounded: no call exceeds 1 + retries + repairs attempts, and the run made finitely many requests
    assert all(c.attempts <= 3 for c in rec.calls)
    assert len(backend.requests) <= 3 * len(rec.calls)
    assert all(c.status in ("ok", "failed", "skipped") for c in rec.calls)
    assert not rec.halting or rec.halting["reason"] in HALTING_REASONS  # never an internal error
