"""Agent mode: independent subagents dispatched concurrently, classified, recovered per the fallback table,
passed through the packet compiler, voted on (discrete answers), merged, then handed to the Coda.

Every step reads and writes the explicit ``RunState``; nothing here touches the engine. Fan-out uses
``asyncio.gather(return_exceptions=True)`` rather than a TaskGroup: one failing subagent must not cancel its
siblings, or the "1 of N failed → merge N−1" row could never happen. The fan-out's share of a token budget is
worked out before any subagent is sent, so the fan-out cannot overshoot it.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Awaitable, Callable

from mythos.reason import prompts
from mythos.reason.budget import AgentLens
from mythos.reason.calls import MIN_OUT_TOKENS, BudgetExhausted, RunCancelled, prompt_estimate
from mythos.reason.packet_bridge import compile_findings
from mythos.reason.record import SubagentRecord
from mythos.reason.schemas import NO_INSIGHT_PREFIX, MergeReply, SubagentReply
from mythos.reason.similarity import jaccard
from mythos.reason.state import RunState
from mythos.reason.vocab import FallbackRow, SubagentStatus
from mythos.reason.vote import vote_step

Fallback = Callable[[RunState], Awaitable[None]]
MERGE_OUT_TOKENS = 300  # reply room kept back for the merge when a budget is set


def ok_threshold(n: int) -> int:
    """The 60 % rule as whole subagents: N=3 → 2, N=4 → 3, N=5 → 3."""
    return -(-3 * n // 5)


def classify(
    sub: SubagentRecord, reply: SubagentReply | None, error: str | None, question: str, rephrase: float
) -> None:
    """Set a subagent's status from its reply: failed, no_insight, or ok (a rephrased question is failed)."""
    if reply is None:
        sub.status, sub.error = SubagentStatus.FAILED, error or "no usable reply"
        return
    finding = reply.independent_finding
    if jaccard(finding, question) >= rephrase:
        sub.status, sub.error = SubagentStatus.FAILED, "the finding only rephrased the question"
        sub.finding = None
        return
    sub.finding, sub.reasoning, sub.confidence = finding, reply.reasoning, reply.confidence
    sub.tension_flag = reply.tension_flag
    sub.low_confidence = reply.confidence == "low"
    sub.status = (
        SubagentStatus.NO_INSIGHT if finding.lower().startswith(NO_INSIGHT_PREFIX) else SubagentStatus.OK
    )


async def _dispatch(
    st: RunState, sub: SubagentRecord, total: int, seed_chain: list[str] | None, max_tokens: int | None
) -> None:
    tag = f"sub:{sub.letter}:{sub.lens_id}"
    reply, rec = await st.caller.call(
        phase="subagent",
        lens=sub.lens_id,
        tag=tag,
        reply_model=SubagentReply,
        max_tokens=max_tokens,
        messages=prompts.subagent_messages(
            st.question, st.record.prelude, sub.lens_id, total, tag, seed_chain=seed_chain
        ),
    )
    sub.call = rec.index
    classify(
        sub,
        reply,
        f"{rec.error_kind}: {rec.error}" if rec.error_kind else None,
        st.question,
        st.config.rephrase_similarity,
    )


async def _recover(st: RunState, sub: SubagentRecord, total: int) -> None:
    """Apply a failed lens inside the orchestrator as a single hidden pass [§7.5]; a failure stays failed."""
    tag = f"recovery:{sub.letter}:{sub.lens_id}"
    first_error = sub.error
    reply, rec = await st.caller.call(
        phase="recovery",
        lens=sub.lens_id,
        tag=tag,
        reply_model=SubagentReply,
        messages=prompts.subagent_messages(
            st.question, st.record.prelude, sub.lens_id, total, tag, recovery=True
        ),
    )
    sub.recovery_call = rec.index
    classify(
        sub,
        reply,
        f"{rec.error_kind}: {rec.error}" if rec.error_kind else None,
        st.question,
        st.config.rephrase_similarity,
    )
    if sub.status in (SubagentStatus.OK, SubagentStatus.NO_INSIGHT):
        sub.status = (
            SubagentStatus.RECOVERED if sub.status == SubagentStatus.OK else SubagentStatus.NO_INSIGHT
        )
        sub.error = first_error
    else:
        sub.status = SubagentStatus.RECOVERY_FAILED
        sub.error = f"{first_error}; recovery: {sub.error}"


def _lone_tensions(subs: list[SubagentRecord]) -> list[str]:
    flags = [(s.letter, s.tension_flag) for s in subs if s.tension_flag and s.finding]
    lone = []
    for letter, flag in flags:
        if not any(other != letter and jaccard(flag, text) >= 0.5 for other, text in flags):
            lone.append(f"{letter}: {flag}")
    return lone


def fan_out_room(
    st: RunState, subs: list[SubagentRecord], seed_chain: list[str] | None
) -> tuple[int, int | None]:
    """Reserve the fan-out's budget before anything is sent: how many subagents the budget affords (with at
    least MIN_OUT_TOKENS of reply room each, after keeping room for the merge) and each one's reply room."""
    want = st.config.policy.max_tokens_per_call
    n = len(subs)
    est = prompt_estimate(
        prompts.subagent_messages(
            st.question, st.record.prelude, subs[0].lens_id, n, "sub:A:x", seed_chain=seed_chain
        )
    )
    for k in range(n, 0, -1):
        room = st.budget.out_room(k * est + est + MERGE_OUT_TOKENS)  # the merge's prompt ~ one more prompt
        if room is None:
            return n, None
        if room // k >= MIN_OUT_TOKENS:
            return k, min(want, room // k)
    raise BudgetExhausted(
        f"the budget cannot afford even one subagent (about {est} prompt tokens each) plus the merge"
    )


async def run_agent(
    st: RunState,
    lenses: list[AgentLens],
    all_failed: Fallback,
    seed_chain: list[str] | None = None,
    escalated: bool = False,
) -> None:
    """Dispatch, classify, recover, compile, vote, merge. ``all_failed`` runs when every subagent failed
    (silent rounds). ``escalated``: the run started as silent/trace and the subagents continue it (seeded
    with its insight chain); an all-failed fan-out then ends with the rounds."""
    record, cfg = st.record, st.config
    subs = [
        SubagentRecord(letter=string.ascii_uppercase[i], lens_id=a.lens_id, base=a.base)
        for i, a in enumerate(lenses)
    ]
    k, per_call = fan_out_room(st, subs, seed_chain)
    if k < len(subs):
        record.notes.append(
            f"the budget affords {k} of {len(subs)} planned subagents: dispatched "
            + ", ".join(s.lens_id for s in subs[:k])
        )
        subs, lenses = subs[:k], lenses[:k]
    record.agent_lenses = [a.to_dict() for a in lenses]
    if not escalated:
        record.prelude["total_rounds"] = len(lenses)
    record.subagents = subs
    n = len(subs)
    outcomes = await asyncio.gather(
        *(_dispatch(st, s, n, seed_chain, per_call) for s in subs), return_exceptions=True
    )
    cancelled = next((o for o in outcomes if isinstance(o, RunCancelled)), None)
    if cancelled is not None:  # a replay of a fan-out the run deadline cut: stop where the original stopped
        raise cancelled
    stopped = None
    for sub, outcome in zip(subs, outcomes, strict=True):
        if isinstance(outcome, BudgetExhausted):
            stopped = stopped or outcome
            sub.status, sub.error = SubagentStatus.FAILED, f"{type(outcome).__name__}: {outcome}"
        elif isinstance(outcome, BaseException):
            sub.status, sub.error = SubagentStatus.FAILED, f"{type(outcome).__name__}: {outcome}"
    for sub in subs:
        st.trajectory.append(
            f"Subagent {sub.letter} ({sub.lens_id}): " + (sub.finding or f"failed — {sub.error}")
        )
    if stopped is not None:
        raise stopped
    failed = [s for s in subs if s.status == SubagentStatus.FAILED]
    if not failed:
        record.fallback_row = FallbackRow.NONE
    elif len(failed) == n and escalated:
        record.fallback_row = FallbackRow.ALL_FAILED
        record.notes.append("all escalated subagents failed: the answer rests on the rounds already run")
        return
    elif len(failed) == n:
        record.fallback_row = FallbackRow.ALL_FAILED
        record.notes.append(
            "all subagents failed: abandoned agent mode for silent mode with the standard rotation"
        )
        await all_failed(st)
        return
    elif len(failed) == 1 and n >= 4:
        record.fallback_row = FallbackRow.ONE_FAILED
        record.notes.append(
            f"subagent {failed[0].letter} ({failed[0].lens_id}) failed; merging the other {n - 1}"
        )
    else:  # 2..N-1 failed, or 1 of fewer than 4 [D-23]: the orchestrator re-applies each failed lens
        record.fallback_row = FallbackRow.RECOVERED
        for sub in failed:
            await _recover(st, sub, n)
            st.trajectory.append(f"Subagent {sub.letter} recovery: " + (sub.finding or "failed again"))
    usable = [s for s in subs if s.status in (SubagentStatus.OK, SubagentStatus.RECOVERED)]
    ok_enough = len(usable) >= ok_threshold(n)
    if not ok_enough:
        record.notes.append(
            f"only {len(usable)} of {n} subagents gave a usable finding (< 60 %): the question may "
            "not have warranted agent mode; merged silently without forcing a synthesis"
        )
    vote_text = None
    if cfg.vote and len(usable) >= 2:
        vote = await vote_step(
            st.caller,
            st.question,
            [(s.letter, s.finding) for s in usable],
            {s.letter: s.reasoning for s in usable},
            max_candidates=cfg.max_verify,
        )
        if vote.discrete:
            record.vote = vote.to_dict()
            vote_text = vote.prompt_block()
            st.trajectory.append(f"Vote: {vote.winner!r} ({vote.decided_by})")
    findings, packet = compile_findings(
        subs, question=st.question, packets=cfg.packets, packets_dir=cfg.packets_dir
    )
    record.packet = packet
    failure_notes = [
        f"[Subagent {s.letter} — failed: {s.error}]"
        for s in subs
        if s.status in (SubagentStatus.FAILED, SubagentStatus.RECOVERY_FAILED)
    ]
    reply, rec = await st.caller.call(
        phase="merge",
        lens=None,
        tag="merge",
        reply_model=MergeReply,
        messages=prompts.merge_messages(
            st.question,
            record.prelude,
            findings,
            failure_notes,
            _lone_tensions(usable),
            silent_merge=not ok_enough,
            from_packet=bool(packet.get("used")),
            vote=vote_text,
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
    st.trajectory.append("Merge: " + merge["synthesis"])
    if merge["tensions"]:
        st.trajectory.append("Tensions kept: " + "; ".join(t["claim"] for t in merge["tensions"]))
    elif len(usable) >= 2:
        record.notes.append(
            "suspicious unanimity: complexity over-diagnosed or lenses too weakly differentiated"
        )
