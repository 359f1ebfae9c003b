"""Agent mode: independent subagents dispatched concurrently, classified, recovered per the fallback table,
passed through the packet compiler, merged, then handed to the Coda.

Fan-out uses ``asyncio.gather(return_exceptions=True)`` rather than a TaskGroup: one failing subagent must not
cancel its siblings, or the "1 of N failed → merge N−1" row could never happen.
"""

from __future__ import annotations

import asyncio
import string
from typing import TYPE_CHECKING

from mythos.reason import prompts
from mythos.reason.budget import AgentLens, expand_rounds, plan_budget
from mythos.reason.calls import BudgetExhausted
from mythos.reason.lenses import STANDARD_ROTATION
from mythos.reason.packet_bridge import compile_findings
from mythos.reason.record import SubagentRecord
from mythos.reason.schemas import NO_INSIGHT_PREFIX, MergeReply, SubagentReply
from mythos.reason.similarity import jaccard

if TYPE_CHECKING:
    from mythos.reason.engine import Engine


def ok_threshold(n: int) -> int:
    """The 60 % rule as whole subagents: N=3 → 2, N=4 → 3, N=5 → 3."""
    return -(-3 * n // 5)


def _classify(engine: Engine, sub: SubagentRecord, reply: SubagentReply | None, error: str | None) -> None:
    if reply is None:
        sub.status, sub.error = "failed", error or "no usable reply"
        return
    finding = reply.independent_finding
    if jaccard(finding, engine.inv.question) >= engine.config.rephrase_similarity:
        sub.status, sub.error = "failed", "the finding only rephrased the question"
        sub.finding = None
        return
    sub.finding, sub.reasoning, sub.confidence = finding, reply.reasoning, reply.confidence
    sub.tension_flag = reply.tension_flag
    sub.low_confidence = reply.confidence == "low"
    sub.status = "no_insight" if finding.lower().startswith(NO_INSIGHT_PREFIX) else "ok"


async def _dispatch(engine: Engine, sub: SubagentRecord, total: int, seed_chain: list[str] | None) -> None:
    tag = f"sub:{sub.letter}:{sub.lens_id}"
    reply, rec = await engine.caller.call(
        phase="subagent",
        lens=sub.lens_id,
        tag=tag,
        reply_model=SubagentReply,
        messages=prompts.subagent_messages(
            engine.inv.question, engine.record.prelude, sub.lens_id, total, tag, seed_chain=seed_chain
        ),
    )
    sub.call = rec.index
    _classify(engine, sub, reply, f"{rec.error_kind}: {rec.error}" if rec.error_kind else None)


async def _recover(engine: Engine, sub: SubagentRecord, total: int) -> None:
    """Apply a failed lens inside the orchestrator as a single hidden pass [§7.5]; a failure stays failed."""
    tag = f"recovery:{sub.letter}:{sub.lens_id}"
    first_error = sub.error
    reply, rec = await engine.caller.call(
        phase="recovery",
        lens=sub.lens_id,
        tag=tag,
        reply_model=SubagentReply,
        messages=prompts.subagent_messages(
            engine.inv.question, engine.record.prelude, sub.lens_id, total, tag, recovery=True
        ),
    )
    sub.recovery_call = rec.index
    _classify(engine, sub, reply, f"{rec.error_kind}: {rec.error}" if rec.error_kind else None)
    if sub.status in ("ok", "no_insight"):
        sub.status = "recovered" if sub.status == "ok" else "no_insight"
        sub.error = first_error
    else:
        sub.status = "recovery_failed"
        sub.error = f"{first_error}; recovery: {sub.error}"


def _lone_tensions(subs: list[SubagentRecord]) -> list[str]:
    flags = [(s.letter, s.tension_flag) for s in subs if s.tension_flag and s.finding]
    lone = []
    for letter, flag in flags:
        if not any(other != letter and jaccard(flag, text) >= 0.5 for other, text in flags):
            lone.append(f"{letter}: {flag}")
    return lone


async def run_agent(
    engine: Engine, lenses: list[AgentLens], seed_chain: list[str] | None = None, escalated: bool = False
) -> None:
    """Dispatch, classify, recover, compile, merge. ``escalated``: the run started as silent/trace and the
    subagents continue it (seeded with its insight chain); an all-failed fan-out then ends with the rounds."""
    record, cfg = engine.record, engine.config
    record.agent_lenses = [a.to_dict() for a in lenses]
    if not escalated:
        record.prelude["total_rounds"] = len(lenses)
    subs = [
        SubagentRecord(letter=string.ascii_uppercase[i], lens_id=a.lens_id, base=a.base)
        for i, a in enumerate(lenses)
    ]
    record.subagents = subs
    n = len(subs)
    outcomes = await asyncio.gather(
        *(_dispatch(engine, s, n, seed_chain) for s in subs), return_exceptions=True
    )
    budget_hit = None
    for sub, outcome in zip(subs, outcomes, strict=True):
        if isinstance(outcome, BudgetExhausted):
            budget_hit = outcome
            sub.status, sub.error = "failed", f"budget: {outcome}"
        elif isinstance(outcome, BaseException):
            sub.status, sub.error = "failed", f"{type(outcome).__name__}: {outcome}"
    for sub in subs:
        engine.trajectory.append(
            f"Subagent {sub.letter} ({sub.lens_id}): " + (sub.finding or f"failed — {sub.error}")
        )
    if budget_hit is not None:
        raise budget_hit
    failed = [s for s in subs if s.status == "failed"]
    k = len(failed)
    if k == 0:
        record.fallback_row = "none"
    elif k == n and escalated:
        record.fallback_row = "all_failed"
        record.notes.append("all escalated subagents failed: the answer rests on the rounds already run")
        return
    elif k == n:
        record.fallback_row = "all_failed"
        record.notes.append(
            "all subagents failed: abandoned agent mode for silent mode with the standard rotation"
        )
        budget = plan_budget(STANDARD_ROTATION, [], max_rounds=cfg.max_rounds)
        engine.budget_items = budget
        record.budget = [b.to_dict() for b in budget]
        await engine._rounds("silent", expand_rounds(budget))
        return
    elif k == 1 and n >= 4:
        record.fallback_row = "one_failed"
        record.notes.append(
            f"subagent {failed[0].letter} ({failed[0].lens_id}) failed; merging the other {n - 1}"
        )
    else:  # 2..N-1 failed, or 1 of fewer than 4 [D-23]: the orchestrator re-applies each failed lens
        record.fallback_row = "recovered"
        for sub in failed:
            await _recover(engine, sub, n)
            engine.trajectory.append(f"Subagent {sub.letter} recovery: " + (sub.finding or "failed again"))
    usable = [s for s in subs if s.status in ("ok", "recovered")]
    ok_enough = len(usable) >= ok_threshold(n)
    if not ok_enough:
        record.notes.append(
            f"only {len(usable)} of {n} subagents gave a usable finding (< 60 %): the question may "
            "not have warranted agent mode; merged silently without forcing a synthesis"
        )
    findings, packet = compile_findings(engine, subs)
    record.packet = packet
    failure_notes = [
        f"[Subagent {s.letter} — failed: {s.error}]"
        for s in subs
        if s.status in ("failed", "recovery_failed")
    ]
    reply, rec = await engine.caller.call(
        phase="merge",
        lens=None,
        tag="merge",
        reply_model=MergeReply,
        messages=prompts.merge_messages(
            engine.inv.question,
            record.prelude,
            findings,
            failure_notes,
            _lone_tensions(usable),
            silent_merge=not ok_enough,
            from_packet=bool(packet.get("used")),
        ),
    )
    if reply is None:
        record.fallbacks.append(f"the merge failed ({rec.error_kind}); the Coda read the findings directly")
        record.merge = {
            "silent": True,
            "failed": True,
            "convergent_points": [],
            "tensions": [],
            "synthesis": "",
            "source": "none",
        }
        return
    merge = reply.model_dump()
    merge["silent"] = not ok_enough
    merge["source"] = "packet" if packet.get("used") else "findings"
    record.merge = merge
    if packet.get("used"):
        from mythos.reason.packet_ingest import record_merge

        packet["synthesis_pass_id"] = record_merge(packet["run_dir"], packet["root"], merge["synthesis"])
    engine.trajectory.append("Merge: " + merge["synthesis"])
    if merge["tensions"]:
        engine.trajectory.append("Tensions kept: " + "; ".join(t["claim"] for t in merge["tensions"]))
    elif len(usable) >= 2:
        record.notes.append(
            "suspicious unanimity: complexity over-diagnosed or lenses too weakly differentiated"
        )
