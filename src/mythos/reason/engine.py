"""The engine: Prelude → rounds (silent/trace) or parallel subagents (agent) → Coda, over any LLMBackend.

Each phase is a typed call whose outcome lands in the run record; control flow reads the record's data,
never raw prose. Every path ends with a footer: a failed Prelude falls back to the protocol's default
diagnosis and silent mode, failed rounds halt the loop, failed subagents follow the fallback table, discrete
answers go through a vote/verifier step, and a failed or unaffordable Coda is replaced by a local one whose
outcome is ``no_answer`` and which names the real cause. A run-level deadline bounds it all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mythos.reason import prompts
from mythos.reason.agent import run_agent
from mythos.reason.backends import LLMBackend
from mythos.reason.budget import (
    AgentLens,
    BudgetItem,
    complexity_score,
    expand_rounds,
    minimal_agent_lenses,
    plan_agent_lenses,
    plan_budget,
)
from mythos.reason.calls import BudgetExhausted, Caller, CallPolicy, RunCancelled, TokenBudget
from mythos.reason.halting import judge_round
from mythos.reason.lenses import LENSES, SEQUENCES, STANDARD_ROTATION
from mythos.reason.record import CallRecord, RoundRecord, RunRecord
from mythos.reason.render import footer, render
from mythos.reason.routing import MODES, Invocation, parse_invocation, route
from mythos.reason.schemas import CodaReply, PreludeReply, RoundReply
from mythos.reason.state import RunState
from mythos.reason.vocab import CallStatus, ErrorKind, FallbackRow, HaltReason, Mode, Outcome, SubagentStatus
from mythos.reason.vote import vote_step

HALTING_REASONS = tuple(HaltReason)
CODA_HOLD = 0.25  # share of a token/cost budget kept back for the Coda until it runs


@dataclass
class EngineConfig:
    """Everything that shapes a run. Invalid values raise ValueError naming the field and the fix."""

    mode: str | None = None  # explicit mode beats any keyword [D-3]
    silent_strategy: str = "per_round"  # or "single_call" [D-30]
    halting: bool = True  # False runs every budgeted round (the counterfactual for measuring savings)
    max_rounds: int = 8
    min_subagents: int = 3
    max_subagents: int = 5
    allow_alternate_sequences: bool = True
    show_prelude_for_direct: bool = False
    max_concurrency: int = 5  # >= max_subagents, so a full fan-out is in flight at once
    run_deadline_s: float = 300.0
    allow_escalation_of_forced: bool = False  # may a keyword-forced mode escalate after a re-Prelude? [D-19]
    no_delta_similarity: float = 0.9  # Jaccard word overlap at which a new insight counts as a repeat [D-14]
    rephrase_similarity: float = 0.92  # finding vs question overlap at which a subagent just rephrased [D-20]
    packets: bool = True  # route agent findings through the packet compiler when it is importable
    packets_dir: str | None = None  # where packet run directories go (default: a temp dir per run)
    policy: CallPolicy = field(default_factory=CallPolicy)
    max_tokens: int | None = None
    max_cost: float | None = None
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    vote: bool = True  # the vote/verifier step for discrete answers (agent merge, silent/trace Coda)
    max_verify: int = 3  # verifier calls at most (one per distinct candidate answer)
    detect_slots: bool = True  # cap max_concurrency at the server's reported slot count (llama.cpp /props)

    def validate(self) -> EngineConfig:
        def bad(name: str, value: Any, fix: str) -> ValueError:
            return ValueError(f"config field {name}={value!r} is invalid: {fix}")

        if self.mode is not None and self.mode not in MODES:
            raise bad("mode", self.mode, f"use one of {', '.join(MODES)} or leave it unset")
        if self.silent_strategy not in ("per_round", "single_call"):
            raise bad("silent_strategy", self.silent_strategy, "use 'per_round' or 'single_call'")
        if not 3 <= self.max_rounds <= 12:
            raise bad("max_rounds", self.max_rounds, "use 3..12 (the protocol targets 4-8)")
        if not 1 <= self.min_subagents <= self.max_subagents <= 8:
            raise bad(
                "min_subagents/max_subagents",
                (self.min_subagents, self.max_subagents),
                "need 1 <= min <= max <= 8 (the protocol uses 3..5)",
            )
        if self.max_concurrency < 1:
            raise bad("max_concurrency", self.max_concurrency, "use 1 or more")
        if self.run_deadline_s <= 0:
            raise bad("run_deadline_s", self.run_deadline_s, "use a positive number of seconds")
        for name in ("call_deadline_s", "attempt_timeout_s"):
            if getattr(self.policy, name) <= 0:
                raise bad(name, getattr(self.policy, name), "use a positive number of seconds")
        if self.policy.max_retries < 0 or self.policy.max_retries > 10:
            raise bad("max_retries", self.policy.max_retries, "use 0..10")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise bad("max_tokens", self.max_tokens, "use a positive token count or leave it unset")
        if self.max_cost is not None and self.max_cost <= 0:
            raise bad("max_cost", self.max_cost, "use a positive amount or leave it unset")
        for name in ("price_in_per_mtok", "price_out_per_mtok"):
            if getattr(self, name) < 0:
                raise bad(name, getattr(self, name), "use a price >= 0 per 1M tokens")
        if self.max_cost is not None and self.price_in_per_mtok == 0 and self.price_out_per_mtok == 0:
            raise bad(
                "max_cost",
                self.max_cost,
                "a cost budget needs prices: pass --price-in and --price-out (per 1M tokens) or set "
                "price_in_per_mtok / price_out_per_mtok in the config file",
            )
        if self.policy.max_tokens_per_call < 16:
            raise bad("max_tokens_per_call", self.policy.max_tokens_per_call, "use 16 or more")
        if not 0 <= self.max_verify <= 5:
            raise bad("max_verify", self.max_verify, "use 0..5")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FALLBACK_PRELUDE = {
    "not_asking": ["(diagnosis unavailable)"],
    "complexity_checks": {
        "multi_hop": True,
        "ambiguous_tradeoffs": False,
        "hidden_assumptions": False,
        "novel_domain": False,
        "high_stakes": False,
    },
    "primary_drivers": ["Multi-hop"],
    "difficulty_diagnosis": "unknown: the diagnosis call failed",
    "problem_type": "standard",
    "sequence": None,
    "sequence_reason": None,
    "success_criterion": "a direct, defensible answer",
}

DRIVER_FROM_CHECK = {
    "multi_hop": "Multi-hop",
    "ambiguous_tradeoffs": "Trade-offs",
    "hidden_assumptions": "Hidden assumptions",
    "novel_domain": "Novel domain",
}


class Engine:
    """Runs one invocation at a time. ``on_call`` (optional) is told about each call as it finishes."""

    def __init__(
        self,
        backend: LLMBackend,
        config: EngineConfig | None = None,
        *,
        on_call: Callable[[CallRecord], None] | None = None,
    ):
        self.backend = backend
        self.config = (config or EngineConfig()).validate()
        self.on_call = on_call

    # ------------------------------------------------------------------------------------------ entry

    async def run(self, invocation: str | Invocation) -> RunRecord:
        """Reason about one invocation (``"trace Should we…"``) and return its finished run record.

        Raises EmptyQuestion before any call when nothing is left after the keywords; otherwise never raises.
        """
        inv = parse_invocation(invocation) if isinstance(invocation, str) else invocation
        cfg = self.config
        t0 = time.monotonic()
        record = RunRecord(
            question=inv.question,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            backend={"name": self.backend.name, "model": self.backend.model},
            config=cfg.to_dict(),
        )
        record.invocation = {"forced_mode": inv.forced_mode, "keyword": inv.keyword, "api_mode": cfg.mode}
        concurrency = await self._concurrency(record)
        coda_reserve = min(cfg.policy.call_deadline_s, 0.25 * cfg.run_deadline_s)
        budget = TokenBudget(
            max_tokens=cfg.max_tokens,
            max_cost=cfg.max_cost,
            price_in_per_mtok=cfg.price_in_per_mtok,
            price_out_per_mtok=cfg.price_out_per_mtok,
            hold_fraction=CODA_HOLD if cfg.max_tokens is not None or cfg.max_cost is not None else 0.0,
        )
        caller = Caller(
            self.backend,
            record,
            cfg.policy,
            budget,
            t0=t0,
            deadline_at=t0 + cfg.run_deadline_s - coda_reserve,
            max_concurrency=concurrency,
            on_call=self.on_call,
        )
        st = RunState(question=inv.question, config=cfg, record=record, caller=caller, budget=budget)
        try:
            async with asyncio.timeout(cfg.run_deadline_s - coda_reserve):
                await self._body(st, inv)
        except (TimeoutError, RunCancelled):
            st.halt(
                HaltReason.RUN_DEADLINE, note="the run deadline was reached; finishing with what there is"
            )
        except BudgetExhausted as exc:
            st.halt(HaltReason.BUDGET, note=f"stopped: {exc}")
        except Exception as exc:  # a bug must still end the run with an honest footer, not a traceback
            st.halt(HaltReason.ENGINE_ERROR, note=f"internal error: {type(exc).__name__}: {exc}")
        for call in record.calls:
            if call.status == CallStatus.PENDING:
                call.status, call.error_kind = CallStatus.FAILED, ErrorKind.RUN_DEADLINE
                call.error = "cancelled by the run deadline"
                call.t_end = caller.now()
        for sub in record.subagents:
            if sub.status == SubagentStatus.PENDING:
                sub.status, sub.error = SubagentStatus.FAILED, "cancelled: the run stopped before it answered"
        if not record.route:  # stopped before the Prelude finished: there is no mode to claim
            record.route = {
                "score": None,
                "default_mode": None,
                "forced_mode": inv.forced_mode,
                "final_mode": Mode.NONE,
                "forced": inv.forced_mode is not None,
            }
        if not record.coda:
            caller.deadline_at = t0 + cfg.run_deadline_s
            budget.hold_fraction = 0.0  # the Coda may spend what was kept back for it
            await self._coda(st)
        record.outcome = Outcome.NO_ANSWER if record.coda.get("fallback") else Outcome.ANSWERED
        record.footer = footer(record)
        record.rendered = render(record)
        record.summarize(time.monotonic() - t0, cfg.price_in_per_mtok, cfg.price_out_per_mtok)
        return record

    async def _concurrency(self, record: RunRecord) -> int:
        """The configured concurrency, capped at the server's slot count where the server reports one:
        requests beyond the slots only queue on the server and time out there."""
        cfg = self.config
        probe = getattr(self.backend, "server_slots", None)
        if not cfg.detect_slots or probe is None:
            return cfg.max_concurrency
        try:
            slots = await probe()
        except Exception:  # a probe is a courtesy: never fail the run over it
            slots = None
        if slots is None:
            return cfg.max_concurrency
        record.backend["slots"] = slots
        if slots < cfg.max_concurrency:
            record.notes.append(
                f"the server reports {slots} slot(s): at most {slots} call(s) in flight "
                f"(max_concurrency {cfg.max_concurrency})"
            )
        return min(slots, cfg.max_concurrency)

    # ------------------------------------------------------------------------------------------ body

    async def _body(self, st: RunState, inv: Invocation) -> None:
        record, cfg = st.record, self.config
        prelude = await self._prelude(st)
        score = prelude["complexity"]
        forced = cfg.mode or inv.forced_mode
        rt = route(score, forced, explicit=cfg.mode is not None)
        record.route = rt.to_dict()
        if cfg.mode:
            record.route["forced_by"] = "api"
        elif inv.forced_mode:
            record.route["forced_by"] = f"keyword:{inv.keyword}"
        mode = rt.final_mode
        failed_prelude = bool(prelude.get("fallback"))
        if failed_prelude and not forced:
            # the default diagnosis scores 1, which would route a real question to a one-call direct answer:
            # use the protocol's default mode instead
            mode = record.route["final_mode"] = record.route["default_mode"] = Mode.SILENT
            record.route["prelude_failed"] = True
        if mode == Mode.DIRECT:
            await self._direct(st)
        elif mode in (Mode.SILENT, Mode.TRACE):
            self._plan_rounds(st, prelude, minimal=score == 1 and not failed_prelude)
            if mode == Mode.SILENT and cfg.silent_strategy == "single_call":
                await self._silent_single(st)
            else:
                await self._rounds(st, mode)
                await self._vote_rounds(st)
        else:
            lenses = (
                minimal_agent_lenses()
                if score == 1
                else plan_agent_lenses(
                    prelude["primary_drivers"],
                    prelude["complexity_checks"].get("high_stakes", False),
                    min_subagents=cfg.min_subagents,
                    max_subagents=cfg.max_subagents,
                )
            )
            await self._agent(st, lenses)

    async def _prelude(
        self, st: RunState, tag: str = "prelude", chain: list[str] | None = None
    ) -> dict[str, Any]:
        reply, rec = await st.caller.call(
            phase="reprelude" if chain else "prelude",
            lens=None,
            tag=tag,
            messages=prompts.prelude_messages(st.question, tag, chain),
            reply_model=PreludeReply,
        )
        if reply is None:
            data = dict(FALLBACK_PRELUDE, question_restated=st.question, fallback=True)
            st.record.fallbacks.append(
                f"{tag} failed ({rec.error_kind}); used the default diagnosis"
                + ("" if chain else " and silent mode")
            )
        else:
            data = reply.model_dump()
        checks = {
            name: bool(data["complexity_checks"].get(name, False))
            for name in (
                "multi_hop",
                "ambiguous_tradeoffs",
                "hidden_assumptions",
                "novel_domain",
                "high_stakes",
            )
        }
        data["complexity_checks"] = checks
        data["complexity"] = complexity_score(checks)  # computed, never trusted from the model
        if not data["primary_drivers"]:  # [D-9]
            data["primary_drivers"] = [DRIVER_FROM_CHECK[c] for c in DRIVER_FROM_CHECK if checks[c]][:1] or [
                "Multi-hop"
            ]
        data["sequence"], data["problem_type"] = self._choose_sequence(st, data)
        if not chain:
            st.record.prelude = data
        return data

    def _choose_sequence(self, st: RunState, prelude: dict[str, Any]) -> tuple[list[str], str]:
        """Accept an alternate (or custom) sequence only with a stated reason [D-7]; else the standard one."""
        notes = st.record.notes
        ptype = prelude.get("problem_type") or "standard"
        reason = (prelude.get("sequence_reason") or "").strip()
        if ptype == "standard":
            return list(STANDARD_ROTATION), "standard"
        if not self.config.allow_alternate_sequences:
            notes.append(f"alternate sequence {ptype!r} refused: alternate sequences are disabled")
            return list(STANDARD_ROTATION), "standard"
        if not reason:
            notes.append(f"alternate sequence {ptype!r} refused: no reason was given")
            return list(STANDARD_ROTATION), "standard"
        if ptype in SEQUENCES:
            return list(SEQUENCES[ptype]), ptype
        custom = prelude.get("sequence") or []
        if (
            ptype == "custom"
            and len(custom) >= 3
            and custom[0] == "Clarify"
            and all(lens in LENSES for lens in custom)
        ):
            seq = [lens for lens in dict.fromkeys(custom) if lens != "Synthesize"] + ["Synthesize"]
            return seq[:7], "custom"
        notes.append(
            f"problem type {ptype!r} refused (unknown, or a custom sequence that does not "
            "start with Clarify); using the standard rotation"
        )
        return list(STANDARD_ROTATION), "standard"

    def _plan_rounds(self, st: RunState, prelude: dict[str, Any], minimal: bool) -> None:
        if minimal:  # forced trace/silent on a c=1 question: the floor of three rounds [D-4]
            budget = [
                BudgetItem(lens, 1, "minimum budget") for lens in ("Clarify", "Challenge", "Synthesize")
            ]
        else:
            budget = plan_budget(
                prelude["sequence"], prelude["primary_drivers"], max_rounds=self.config.max_rounds
            )
        st.plan_rounds(budget)
        st.record.prelude["budget"] = st.record.budget
        st.record.prelude["total_rounds"] = sum(b.count for b in budget)

    # ------------------------------------------------------------------------------------------ direct

    async def _answer_call(self, st: RunState, phase: str, messages: list) -> bool:
        """One answer-bearing call (direct, single-call silent); True when it gave the answer. It is the last
        call of the run, so it may spend what was held back for a Coda."""
        st.budget.hold_fraction = 0.0
        reply, rec = await st.caller.call(
            phase=phase,
            lens=None,
            tag=phase,
            messages=messages,
            reply_model=CodaReply,
            prose_field="final_answer",
        )
        if reply is None:
            st.record.fallbacks.append(f"the {phase} answer failed ({rec.error_kind})")
            return False
        self._note_prose(st, rec)
        st.record.coda = reply.model_dump()
        return True

    async def _direct(self, st: RunState) -> None:
        await self._answer_call(st, "direct", prompts.direct_messages(st.question, st.record.prelude))

    async def _silent_single(self, st: RunState) -> None:
        path = [slot.lens for slot in expand_rounds(st.budget_items)]
        st.record.halting = {"reason": HaltReason.SINGLE_CALL, "at_round": None}
        messages = prompts.silent_single_messages(st.question, st.record.prelude, path)
        if not await self._answer_call(st, "silent", messages):
            st.trajectory.append("single silent call failed")

    # ------------------------------------------------------------------------------------------ rounds

    async def _rounds(self, st: RunState, mode: str, slots: list | None = None) -> None:
        """The rounds loop: one call per planned slot, judged by ``judge_round``; stops at its verdict."""
        cfg, record = self.config, st.record
        slots = slots if slots is not None else expand_rounds(st.budget_items)
        drivers = list(record.prelude["primary_drivers"])
        chain: list[str] = [r.insight for r in record.rounds if r.insight and not r.discarded]
        i, stop = 0, None
        while i < len(slots) and stop is None:
            slot = slots[i]
            number = len(record.rounds) + 1
            tag = f"round:{number}:{slot.lens}:{slot.application}"
            reply, rec = await st.caller.call(
                phase="round",
                lens=slot.lens,
                tag=tag,
                reply_model=RoundReply,
                messages=prompts.round_messages(
                    st.question, record.prelude, chain, slot.lens, slot.application, number, tag
                ),
            )
            verdict = judge_round(reply, chain, cfg)
            record.rounds.append(
                RoundRecord(
                    number=number,
                    lens=slot.lens,
                    application=slot.application,
                    driver=slot.driver,
                    status=verdict.status,
                    insight=verdict.insight,
                    what_changed=reply.what_changed if reply is not None else "",
                    discarded=verdict.discarded,
                    call=rec.index,
                    note=verdict.note if reply is not None else f"{rec.error_kind}: {rec.error}",
                )
            )
            detail = verdict.trajectory if reply is not None else f"failed ({rec.error_kind})"
            st.trajectory.append(f"R{number} {slot.lens}: {detail}")
            stop, note = verdict.halt, None
            if reply is None:
                note = f"round {number} ({slot.lens}) failed: {rec.error_kind}"
            if verdict.insight is not None:
                chain.append(verdict.insight)
                if verdict.revises:
                    record.notes.append(
                        f"round {number} revises round(s) {verdict.revises} with better support"
                    )
                if stop is None:
                    stop, note, slots, drivers, mode = await self._after_insight(
                        st, reply, number, i, slots, chain, drivers, mode
                    )
            if stop is not None:
                st.halt(stop, number, note)
            i += 1
        if stop is None:
            st.halt(HaltReason.MAX_ROUNDS, len(record.rounds))
        record.halting["skipped_lenses"] = [s.lens for s in slots[i:]] if stop is not None else []
        record.halting["budget_rounds"] = len(slots)

    async def _after_insight(
        self,
        st: RunState,
        reply: RoundReply,
        number: int,
        i: int,
        slots: list,
        chain: list[str],
        drivers: list[str],
        mode: str,
    ) -> tuple[HaltReason | None, str | None, list, list[str], str]:
        """A missed driver (re-Prelude, maybe escalation to agent) or a claim the user must verify
        (silent → trace). Returns (halt reason or None, note, slots, drivers, mode)."""
        record = st.record
        if number >= 2 and reply.missed_driver and reply.missed_driver not in drivers:  # [D-18]
            if record.reprelude is not None:
                return (
                    HaltReason.SCOPE_DRIFT,
                    "a second missed driver: halted for scope drift",
                    slots,
                    drivers,
                    mode,
                )
            slots = slots[: i + 1] + await self._reprelude(
                st, number, reply.missed_driver, slots[i + 1 :], chain
            )
            drivers = list(record.reprelude["prelude"]["primary_drivers"])
            if self._may_escalate(st) and record.reprelude["prelude"]["complexity"] >= 4:
                await self._escalate_to_agent(st, number, slots[i + 1 :], chain)
                return HaltReason.ESCALATED, None, slots, drivers, mode
        if (
            reply.needs_user_verification
            and number >= 2
            and mode == Mode.SILENT
            and record.route.get("final_mode") == Mode.SILENT
            and self._may_escalate(st)
        ):
            record.route["final_mode"] = mode = (
                Mode.TRACE
            )  # the remaining rounds (and the earlier ones) are shown
            record.escalation = {
                "from": "silent",
                "to": "trace",
                "after_round": number,
                "why": "a round surfaced a controversy the user needs to verify",
            }
            record.notes.append(
                f"escalated silent → trace at round {number}: the user needs to verify a claim"
            )
        return None, None, slots, drivers, mode

    def _may_escalate(self, st: RunState) -> bool:
        """A mode forced by keyword or API is not escalated unless the config allows it [D-19]."""
        return not st.record.route.get("forced") or self.config.allow_escalation_of_forced

    async def _escalate_to_agent(
        self, st: RunState, after_round: int, remaining: list, chain: list[str]
    ) -> None:
        """Re-scored complexity crossed the agent threshold: dispatch the remaining lenses as subagents seeded
        with the insight chain, then merge [§6.4]."""
        record = st.record
        origin = record.route["final_mode"]
        bases = [lens for lens in dict.fromkeys(s.lens for s in remaining) if lens != "Synthesize"]
        for pad in ("Challenge", "Expand", "Deepen"):
            if len(bases) >= self.config.min_subagents:
                break
            if pad not in bases:
                bases.append(pad)
        lenses = [
            AgentLens(lens, lens, "escalated after the re-Prelude")
            for lens in bases[: self.config.max_subagents]
        ]
        record.escalation = {
            "from": origin,
            "to": "agent",
            "after_round": after_round,
            "why": f"re-scored complexity {record.reprelude['prelude']['complexity']} >= 4",
        }
        record.reprelude["escalation"] = "agent"
        record.notes.append(f"escalated {origin} → agent after the re-Prelude at round {after_round}")
        st.halt(HaltReason.ESCALATED, after_round)
        await run_agent(st, lenses, self._silent_fallback, seed_chain=list(chain), escalated=True)

    async def _reprelude(
        self, st: RunState, after_round: int, missed: str, remaining: list, chain: list[str]
    ) -> list:
        """Re-diagnose once, keep every prior round, and re-budget only the lenses still to come [§6.4]."""
        new = await self._prelude(st, tag="reprelude", chain=chain)
        drivers = list(dict.fromkeys([missed] + list(new["primary_drivers"])))[:3]
        new["primary_drivers"] = drivers
        lenses = list(dict.fromkeys(s.lens for s in remaining)) or ["Synthesize"]
        left = max(3, self.config.max_rounds - after_round)
        budget = plan_budget(lenses, drivers, max_rounds=left)
        new["budget"] = [b.to_dict() for b in budget]
        st.record.reprelude = {
            "after_round": after_round,
            "missed_driver": missed,
            "prelude": new,
            "escalation": None,
        }
        if new["complexity"] >= 4 and not self._may_escalate(st):
            st.record.reprelude["escalation"] = "not performed: the mode was forced [D-19]"
        st.record.notes.append(f"re-Prelude after round {after_round}: missed driver {missed}")
        return expand_rounds(budget)

    async def _vote_rounds(self, st: RunState) -> None:
        """Silent/trace: when the accepted insights commit to discrete answers, count and verify them."""
        if not self.config.vote or st.record.vote is not None:
            return
        findings = [(f"R{r.number}", r.insight) for r in st.record.rounds if r.insight and not r.discarded]
        if len(findings) < 2:
            return
        vote = await vote_step(st.caller, st.question, findings, max_candidates=self.config.max_verify)
        if vote.discrete:
            st.record.vote = vote.to_dict()
            st.trajectory.append(f"Vote: {vote.winner!r} ({vote.decided_by})")

    # ------------------------------------------------------------------------------------------ agent

    async def _agent(self, st: RunState, lenses: list[AgentLens]) -> None:
        await run_agent(st, lenses, self._silent_fallback)

    async def _silent_fallback(self, st: RunState) -> None:
        """All subagents failed: silent mode with the standard rotation (fallback table, last row)."""
        st.plan_rounds(plan_budget(STANDARD_ROTATION, [], max_rounds=self.config.max_rounds))
        await self._rounds(st, Mode.SILENT, expand_rounds(st.budget_items))
        await self._vote_rounds(st)

    # ------------------------------------------------------------------------------------------ coda

    def _coda_trajectory(self, st: RunState) -> list[str]:
        record = st.record
        mode = record.route.get("final_mode")
        if mode == Mode.SILENT or (mode == Mode.AGENT and record.fallback_row == FallbackRow.ALL_FAILED):
            lines = ["Lens path: " + " → ".join(r.lens for r in record.rounds)] + st.trajectory
        else:
            lines = list(st.trajectory)
        if record.halting.get("reason"):
            lines.append(f"halted: {record.halting['reason']} at round {record.halting.get('at_round')}")
        if record.reprelude:
            lines.append(f"re-Prelude after round {record.reprelude['after_round']}")
        return lines

    async def _coda(self, st: RunState) -> None:
        record, caller = st.record, st.caller
        mode = record.route.get("final_mode") or Mode.DIRECT
        affordable = st.budget.exhausted() is None
        if affordable and caller.remaining() > 0 and mode != Mode.DIRECT and (st.trajectory or record.merge):
            vote = _vote_block(record.vote)
            try:
                reply, rec = await caller.call(
                    phase="coda",
                    lens=None,
                    tag="coda",
                    reply_model=CodaReply,
                    prose_field="final_answer",
                    messages=prompts.coda_messages(
                        st.question,
                        record.prelude,
                        mode,
                        self._coda_trajectory(st),
                        record.notes + record.fallbacks,
                        vote=vote,
                    ),
                )
            except (BudgetExhausted, RunCancelled) as exc:
                reply, rec, why = None, None, f"the Coda could not run ({exc})"
            if reply is not None:
                self._note_prose(st, rec)
                record.coda = reply.model_dump()
                return
            if rec is not None:
                why = f"the Coda call failed ({rec.error_kind})"
        elif not affordable:
            why = "the budget was spent before the Coda"
        elif caller.remaining() <= 0:
            why = "no time was left for the Coda"
        else:
            why = "no usable step finished, so there was nothing to synthesize"
        record.fallbacks.append(f"{why}; the answer below was assembled by the engine, not the model")
        record.coda = self._local_coda(st)

    def _note_prose(self, st: RunState, rec) -> None:
        if rec is not None and rec.error_kind == ErrorKind.PROSE:
            st.record.fallbacks.append(
                f"the {rec.phase} reply ignored the JSON format; its prose is the answer"
            )

    def _local_coda(self, st: RunState) -> dict[str, Any]:
        """The run's output when no model answer exists: what the run did learn, stated plainly as not an
        answer, and the real cause of the failure."""
        record = st.record
        insights = [r.insight for r in record.rounds if r.insight and not r.discarded]
        findings = [
            f"{s.lens_id}: {s.finding}"
            for s in record.subagents
            if s.finding and s.status in (SubagentStatus.OK, SubagentStatus.RECOVERED)
        ]
        synthesis = (record.merge or {}).get("synthesis")
        cause = failure_cause(record.calls)
        record.no_answer_reason = cause
        parts = [f"No answer: the model did not produce one. Cause: {cause}"]
        if synthesis:
            parts.append("Merged view of the findings (not an answer):\n" + synthesis)
        if insights:
            parts.append("Insights reached before the run stopped:\n" + "\n".join(f"- {s}" for s in insights))
        if findings:
            parts.append("Independent findings:\n" + "\n".join(f"- {s}" for s in findings))
        return {
            "trajectory": st.trajectory,
            "cross_check": "not performed (engine fallback)",
            "final_answer": "\n\n".join(parts),
            "residual_uncertainty": ["the synthesis step did not run"],
            "load_bearing_assumptions": "unknown — the model's synthesis is missing",
            "fallback": True,
        }


def _vote_block(vote: dict | None) -> str | None:
    if not vote or not vote.get("discrete"):
        return None
    from mythos.reason.vote import Candidate, Vote

    cands = [
        Candidate(c["answer"], list(c["sources"]), c.get("verdict"), c.get("check", ""))
        for c in vote["candidates"]
    ]
    return Vote(
        cands, vote["voters"], True, vote.get("winner"), vote.get("decided_by", "none")
    ).prompt_block()


_CONTEXT = ("context size", "context length", "context window", "maximum context", "too many tokens", "n_ctx")


def failure_cause(calls: list[CallRecord]) -> str:
    """The real reason no answer was produced, from the failed calls' error kinds and the servers' own
    words — a context-size 400 is not "check the URL"."""
    failed = [c for c in calls if c.status != CallStatus.OK]
    if not calls:
        return "no call was made."
    if not failed:
        return "every call succeeded, but none of them was the answer (the run stopped before the Coda)."
    errors = " ".join((c.error or "") for c in failed).lower()
    kinds = {c.error_kind for c in failed}
    first = next((c for c in failed if c.error), failed[0])
    said = f" (the {first.phase} call: {first.error})" if first.error else ""
    if any(word in errors for word in _CONTEXT):
        return (
            "the prompt does not fit the model's context window" + said + ". Start the server with a larger "
            "context (llama.cpp: -c 8192) or use a model with a longer one."
        )
    if ErrorKind.BUDGET in kinds:
        return "the token/cost budget ran out" + said + ". Raise --max-tokens / --max-cost."
    if ErrorKind.CONNECTION in kinds:
        return "the server could not be reached" + said + ". Check --base-url and that the server is running."
    if ErrorKind.HTTP_4XX in kinds:
        if any(code in errors for code in ("http 401", "http 403")):
            return "the server refused the credentials" + said + ". Check the API key."
        if "http 404" in errors:
            return "the server does not know this model or path" + said + ". Check --model and --base-url."
        return "the server rejected the request" + said + "."
    if kinds & {ErrorKind.TIMEOUT, ErrorKind.RUN_DEADLINE, ErrorKind.DEADLINE}:
        return (
            "the backend did not answer within the deadlines" + said + ". Raise --call-deadline / "
            "--attempt-timeout / --deadline, or pass --slow-backend for a local CPU model."
        )
    if ErrorKind.TEMPLATE in kinds:
        return (
            "the model copied the prompt's placeholder text instead of answering" + said + ". The model is "
            "probably too small to follow the format; try a larger model or --json-mode schema."
        )
    if ErrorKind.TRUNCATED in kinds:
        return "the replies were cut off at the token limit" + said + ". Raise max_tokens_per_call."
    if kinds & {ErrorKind.HTTP_5XX, ErrorKind.HTTP_429}:
        return "the server kept failing" + said + ". Try again later or lower --concurrency."
    return "the model's replies were not usable" + said + ". Try --json-mode object or schema."


async def think(
    invocation: str,
    backend: LLMBackend,
    config: EngineConfig | None = None,
    *,
    on_call: Callable[[CallRecord], None] | None = None,
) -> RunRecord:
    """Library entry point: ``await think("trace Should we adopt X?", backend)`` → RunRecord.
    ``record.outcome`` says whether the model produced the answer ("answered") or not ("no_answer")."""
    return await Engine(backend, config, on_call=on_call).run(invocation)


def think_sync(
    invocation: str,
    backend: LLMBackend,
    config: EngineConfig | None = None,
    *,
    on_call: Callable[[CallRecord], None] | None = None,
) -> RunRecord:
    """Blocking wrapper for scripts and the CLI; closes the backend afterwards."""

    async def main() -> RunRecord:
        try:
            return await think(invocation, backend, config, on_call=on_call)
        finally:
            await backend.aclose()

    return asyncio.run(main())
