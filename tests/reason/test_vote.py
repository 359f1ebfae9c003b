"""Issue 14 §3: the vote/verifier step (agent merge, silent/trace Coda) and self-consistency as a strategy."""

import asyncio
import json

import pytest

from mythos.reason import OpenAIBackend, ScriptedBackend, self_consistency
from mythos.reason.canned import canned_reply
from mythos.reason.loopback import LoopbackServer
from mythos.reason.vote import Candidate, extract_answer, tally, verify

from .helpers import Q_ETHICS, run

ARITH = "A shop sells 3 boxes of 14 pens and then 5 more pens. How many pens were sold in total?"


@pytest.mark.parametrize(
    "text, answer",
    [
        ("The answer is 1,200.", "1200"),
        ("Final answer: 47 pens", "47"),
        ("47", "47"),
        ("Yes, because the rows never conflict.", "yes"),
        ("Paris", "paris"),
        ("It costs 3.50 dollars", "3.5"),
        ("Adding 42 and 5 gives 47, so the answer is 47.", "47"),
        (
            "Applying the lens shows that the real issue is the team's review culture and its incentives.",
            None,
        ),
        (None, None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_tally_counts_agreeing_findings_and_skips_open_questions():
    vote = tally([("A", "47"), ("B", "The answer is 47."), ("C", "45"), ("D", "47 pens")])
    assert vote.discrete and vote.winner == "47" and vote.decided_by == "majority"
    assert [(c.answer, c.count) for c in vote.candidates] == [("47", 3), ("45", 1)]
    unanimous = tally([("A", "yes"), ("B", "Yes.")])
    assert unanimous.winner == "yes" and unanimous.decided_by == "unanimous"
    open_q = tally(
        [
            ("A", "It depends on the team's incentives and how reviews are scheduled."),
            ("B", "x y z w v u t s"),
        ]
    )
    assert not open_q.discrete and open_q.winner is None and open_q.prompt_block() is None
    assert tally([("A", "45"), ("B", "47")]).decided_by == "tie"


def test_a_verified_minority_is_not_averaged_away():
    vote = tally([("A", "45"), ("B", "45"), ("C", "45"), ("D", "47")])

    async def verifier(cand: Candidate, i: int):
        return ("correct", "3*14+5 = 47") if cand.answer == "47" else ("incorrect", "3*14+5 is not 45")

    asyncio.run(verify(vote, verifier))
    assert vote.winner == "47" and vote.decided_by == "verifier" and "minority" in vote.note
    block = vote.prompt_block()
    assert "'47'" in block and "verifier: correct" in block and "outranks an unverified majority" in block


def test_failed_verification_falls_back_to_the_count():
    vote = tally([("A", "45"), ("B", "45"), ("C", "47")])

    async def verifier(cand, i):
        return None  # every verifier call failed

    asyncio.run(verify(vote, verifier))
    assert vote.winner == "45" and vote.decided_by == "plurality" and "no candidate" in vote.note


def _arith_responder(findings: dict[str, str], verdicts: dict[str, str]):
    def respond(request):
        data = json.loads(canned_reply(request.tag, request.messages))
        if request.tag.startswith("sub:"):
            data["independent_finding"] = findings[request.tag.split(":")[1]]
        if request.tag.startswith("verify:"):
            candidate = request.messages[-1]["content"].split("CANDIDATE ANSWER: ")[1].split("\n")[0]
            data = {"verdict": verdicts.get(candidate, "unsure"), "check": f"checked {candidate}"}
        return json.dumps(data)

    return respond


def test_agent_merge_keeps_the_verified_minority_finding():
    findings = {"A": "The answer is 45.", "B": "45 pens", "C": "The answer is 47.", "D": "45", "E": "45."}
    backend = ScriptedBackend(_arith_responder(findings, {"47": "correct", "45": "incorrect"}))
    rec, backend = run(f"deep {Q_ETHICS}", backend=backend)
    assert rec.vote["winner"] == "47" and rec.vote["decided_by"] == "verifier"
    assert [c.tag for c in rec.calls if c.phase == "verify"] == ["verify:1", "verify:2"]
    merge = next(r for r in backend.requests if r.tag == "merge")
    coda = next(r for r in backend.requests if r.tag == "coda")
    for request in (merge, coda):
        assert "Decision: '47' (verifier)" in request.messages[-1]["content"]
    assert "**Vote:**" in rec.rendered and "'47' 1/5, verifier: correct" in rec.rendered


def test_unanimous_findings_need_no_verifier():
    findings = dict.fromkeys("ABCDE", "The answer is 47.")
    rec, _ = run(f"deep {Q_ETHICS}", backend=ScriptedBackend(_arith_responder(findings, {})))
    assert rec.vote["decided_by"] == "unanimous" and not [c for c in rec.calls if c.phase == "verify"]


def test_open_questions_skip_the_vote():
    rec, _ = run(f"deep {Q_ETHICS}")
    assert rec.vote is None and not [c for c in rec.calls if c.phase == "verify"]


def test_rounds_that_disagree_are_verified_before_the_coda():
    insights = {1: "The answer is 45.", 2: "The answer is 47.", 3: "Checking again, the answer is 47."}

    def respond(request):
        data = json.loads(canned_reply(request.tag, request.messages))
        if request.tag.startswith("round:"):
            data["new_insight"] = insights.get(int(request.tag.split(":")[1]), data["new_insight"])
        if request.tag.startswith("verify:"):
            candidate = request.messages[-1]["content"].split("CANDIDATE ANSWER: ")[1].split("\n")[0]
            data = {"verdict": "correct" if candidate == "47" else "incorrect", "check": "3*14+5"}
        return json.dumps(data)

    rec, backend = run(f"trace {ARITH}", backend=ScriptedBackend(respond))
    assert rec.vote["winner"] == "47" and rec.vote["voters"] >= 3
    coda = next(r for r in backend.requests if r.tag == "coda")
    assert "VOTE ON THE DISCRETE ANSWER" in coda.messages[-1]["content"]


def test_self_consistency_counts_samples():
    answers = iter(["47", "The answer is 47.", "45", "47 pens", "46"])

    def respond(request):
        return json.dumps({"reasoning": "3*14 = 42; 42+5 = 47", "final_answer": next(answers)})

    result = asyncio.run(self_consistency(ARITH, ScriptedBackend(respond), votes=5))
    assert result.answer == "47" and result.vote.decided_by == "majority"
    assert result.record.totals["calls"] == 5 and result.record.outcome == "answered"
    assert [c.tag for c in result.record.calls] == [f"sample:{i}" for i in range(1, 6)]


def test_self_consistency_with_the_verifier_and_a_budget():
    def respond(request):
        if request.tag.startswith("verify:"):
            candidate = request.messages[-1]["content"].split("CANDIDATE ANSWER: ")[1].split("\n")[0]
            return json.dumps({"verdict": "correct" if candidate == "47" else "incorrect", "check": "."})
        n = int(request.tag.split(":")[1])
        return json.dumps({"reasoning": "...", "final_answer": "47" if n == 1 else "45"})

    result = asyncio.run(self_consistency(ARITH, ScriptedBackend(respond), votes=3, verify=True))
    assert result.answer == "47" and result.vote.decided_by == "verifier"
    capped = asyncio.run(self_consistency(ARITH, ScriptedBackend(respond), votes=5, max_tokens=400))
    assert capped.record.totals["tokens"] <= 400
    with pytest.raises(ValueError, match="votes"):
        asyncio.run(self_consistency(ARITH, ScriptedBackend(respond), votes=0))


def test_self_consistency_over_http_samples_at_temperature():
    with LoopbackServer() as srv:
        backend = OpenAIBackend(model="ok", base_url=srv.base_url)

        async def go():
            try:
                return await self_consistency(ARITH, backend, votes=3, temperature=0.8)
            finally:
                await backend.aclose()

        result = asyncio.run(go())
        samples = [e for e in srv.log if e["tag"].startswith("sample:")]
    assert len(samples) == 3 and result.answer is not None
    assert all(e["temperature"] == 0.8 for e in samples)
    assert result.record.totals["tokens_in"] > 0 and not result.record.totals["estimated_tokens"]
