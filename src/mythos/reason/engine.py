"""The engine: Prelude → rounds (silent/trace) or parallel subagents (agent) → Coda, over any LLMBackend.

Each phase is a typed call whose outcome lands in the run record; control flow reads the record's data,
never raw prose. Every path ends with an answer and a footer: a failed Prelude falls back to a default
diagnosis, failed rounds halt the loop, failed subagents follow the fallback table, a failed or unaffordable
Coda is replaced by a local one that says so, and a run-level deadline bounds it all.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mythos.reason import prompts
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
from mythos.reason.calls import BudgetExhausted, Caller, CallPolicy, TokenBudget
from mythos.reason.lenses import LENSES, SEQUENCES, STANDARD_ROTATION
from mythos.reason.record import RoundRecord, RunRecord
from mythos.reason.render import footer, render
from mythos.reason.routing import MODES, Invocation, parse_invocation, route
from mythos.reason.schemas import CodaReply, PreludeReply, RoundReply
from mythos.reason.similarity import max_similarity

HALTING_REASONS = (
    "negative_delta",
    "no_delta",
    "trivial_delta",
    "self_consistent",
    "max_rounds",
    "round_failed",
    "scope_drift",
    "escalated",
    "budget",
    "run_deadline",
    "single_call",
)


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
    def __init__(self, backend: LLMBackend, config: EngineConfig | None = None):
        self.backend = backend
        self.config = (config or EngineConfig()).validate()

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
        coda_reserve = min(cfg.policy.call_deadline_s, 0.25 * cfg.run_deadline_s)
        self.budget = TokenBudget(
            max_tokens=cfg.max_tokens,
            max_cost=cfg.max_cost,
            price_in_per_mtok=cfg.price_in_per_mtok,
            price_out_per_mtok=cfg.price_out_per_mtok,
        )
        self.caller = Caller(
            self.backend,
            record,
            cfg.policy,
            self.budget,
            t0=t0,
            deadline_at=t0 + cfg.run_deadline_s - coda_reserve,
            max_concurrency=cfg.max_concurrency,
        )
        self.record = record
        self.inv = inv
        self.trajectory: list[str] = []
        try:
            async with asyncio.timeout(cfg.run_deadline_s - coda_reserve):
                await self._body()
        except TimeoutError:
            self._halt("run_deadline", note="the run deadline was reached; finishing with what there is")
        except BudgetExhausted as exc:
            self._halt("budget", note=f"stopped: {exc}")
        except Exception as exc:  # a bug must still end the run with an honest footer, not a traceback
            self._halt("engine_error", note=f"internal error: {type(exc).__name__}: {exc}")
        for call in record.calls:
            if call.status == "pending":
                call.status, call.error_kind = "failed", "run_deadline"
                call.error = "cancelled by the run deadline"
                call.t_end = self.caller.now()
        for sub in record.subagents:
            if sub.status == "pending":
                sub.status, sub.error = "failed", "cancelled: the run stopped before it answered"
        if not record.route:  # stopped before the Prelude finished: there is no mode to claim
            record.route = {
                "score": None,
                "default_mode": None,
                "forced_mode": inv.forced_mode,
                "final_mode": "none",
                "forced": inv.forced_mode is not None,
            }
        if not record.coda:
            self.caller.deadline_at = t0 + cfg.run_deadline_s
            await self._coda()
        record.footer = footer(record)
        record.rendered = render(record)
        record.summarize(time.monotonic() - t0, cfg.price_in_per_mtok, cfg.price_out_per_mtok)
        return record

    def _halt(self, reason: str, at_round: int | None = None, note: str | None = None) -> None:
        if not self.record.halting:
            self.record.halting = {"reason": reason, "at_round": at_round}
        if note:
            self.record.fallbacks.append(note)

    # ------------------------------------------------------------------------------------------ body

    async def _body(self) -> None:
        record, cfg, inv = self.record, self.config, self.inv
        prelude = await self._prelude()
        score = prelude["complexity"]
        forced = cfg.mode or inv.forced_mode
        rt = route(score, forced, explicit=cfg.mode is not None)
        record.route = rt.to_dict()
        if cfg.mode:
            record.route["forced_by"] = "api"
        elif inv.forced_mode:
            record.route["forced_by"] = f"keyword:{inv.keyword}"
        mode = rt.final_mode
        if mode == "direct":
            await self._direct()
        elif mode in ("silent", "trace"):
            self._plan_rounds(prelude, minimal=score == 1)
            if mode == "silent" and cfg.silent_strategy == "single_call":
                await self._silent_single()
            else:
                await self._rounds(mode)
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
            await self._agent(lenses)

    async def _prelude(self, tag: str = "prelude", chain: list[str] | None = None) -> dict[str, Any]:
        reply, rec = await self.caller.call(
            phase="reprelude" if chain else "prelude",
            lens=None,
            tag=tag,
            messages=prompts.prelude_messages(self.inv.question, tag, chain),
            reply_model=PreludeReply,
        )
        if reply is None:
            data = dict(FALLBACK_PRELUDE, question_restated=self.inv.question)
            self.record.fallbacks.append(f"{tag} failed ({rec.error_kind}); used the default diagnosis")
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
        data["sequence"], data["problem_type"] = self._choose_sequence(data)
        if not chain:
            self.record.prelude = data
        return data

    def _choose_sequence(self, prelude: dict[str, Any]) -> tuple[list[str], str]:
        """Accept an alternate (or custom) sequence only with a stated reason [D-7]; else the standard one."""
        ptype = prelude.get("problem_type") or "standard"
        reason = (prelude.get("sequence_reason") or "").strip()
        if ptype == "standard":
            return list(STANDARD_ROTATION), "standard"
        if not self.config.allow_alternate_sequences:
            self.record.notes.append(
                f"alternate sequence {ptype!r} refused: alternate sequences are disabled"
            )
            return list(STANDARD_ROTATION), "standard"
        if not reason:
            self.record.notes.append(f"alternate sequence {ptype!r} refused: no reason was given")
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
        self.record.notes.append(
            f"problem type {ptype!r} refused (unknown, or a custom sequence that does not "
            "start with Clarify); using the standard rotation"
        )
        return list(STANDARD_ROTATION), "standard"

    def _plan_rounds(self, prelude: dict[str, Any], minimal: bool) -> None:
        if minimal:  # forced trace/silent on a c=1 question: the floor of three rounds [D-4]
            budget = [
                BudgetItem(lens, 1, "minimum budget") for lens in ("Clarify", "Challenge", "Synthesize")
            ]
        else:
            budget = plan_budget(
                prelude["sequence"], prelude["primary_drivers"], max_rounds=self.config.max_rounds
            )
        self.budget_items = budget
        self.record.budget = [b.to_dict() for b in budget]
        self.record.prelude["budget"] = self.record.budget
        self.record.prelude["total_rounds"] = sum(b.count for b in budget)

    # ------------------------------------------------------------------------------------------ direct

    async def _direct(self) -> None:
        reply, rec = await self.caller.call(
            phase="direct",
            lens=None,
            tag="direct",
            messages=prompts.direct_messages(self.inv.question, self.record.prelude),
            reply_model=CodaReply,
            prose_field="final_answer",
        )
        if reply is not None:
            self._note_prose(rec)
            self.record.coda = reply.model_dump()
        else:
            self.record.fallbacks.append(f"the direct answer failed ({rec.error_kind})")

    # ------------------------------------------------------------------------------------------ rounds

    async def _silent_single(self) -> None:
        path = [slot.lens for slot in expand_rounds(self.budget_items)]
        reply, rec = await self.caller.call(
            phase="silent",
            lens=None,
            tag="silent",
            messages=prompts.silent_single_messages(self.inv.question, self.record.prelude, path),
            reply_model=CodaReply,
            prose_field="final_answer",
        )
        self.record.halting = {"reason": "single_call", "at_round": None}
        if reply is not None:
            self._note_prose(rec)
            self.record.coda = reply.model_dump()
        else:
            self.record.fallbacks.append(f"the single silent call failed ({rec.error_kind})")
            self.trajectory.append("single silent call failed")

    async def _rounds(self, mode: str, slots: list | None = None) -> None:
        cfg, record = self.config, self.record
        slots = slots if slots is not None else expand_rounds(self.budget_items)
        prelude = record.prelude
        drivers = list(prelude["primary_drivers"])
        chain: list[str] = [r.insight for r in record.rounds if r.insight and not r.discarded]
        i = 0
        halted = False
        while i < len(slots):
            slot = slots[i]
            number = len(record.rounds) + 1
            tag = f"round:{number}:{slot.lens}:{slot.application}"
            reply, rec = await self.caller.call(
                phase="round",
                lens=slot.lens,
                tag=tag,
                reply_model=RoundReply,
                messages=prompts.round_messages(
                    self.inv.question, prelude, chain, slot.lens, slot.application, number, tag
                ),
            )
            rnd = RoundRecord(
                number=number,
                lens=slot.lens,
                application=slot.application,
                driver=slot.driver,
                status="failed",
                insight=None,
                call=rec.index,
            )
            record.rounds.append(rnd)
            if reply is None:
                rnd.note = f"{rec.error_kind}: {rec.error}"
                self._halt("round_failed", number, f"round {number} ({slot.lens}) failed: {rec.error_kind}")
                self.trajectory.append(f"R{number} {slot.lens}: failed ({rec.error_kind})")
                halted = True
                break
            rnd.status, rnd.what_changed = reply.status, reply.what_changed
            negative = (
                reply.introduces_confusion
                or reply.status == "negative-delta"
                or (bool(reply.contradicts) and reply.better_supported_than_contradicted is False)
            )
            if negative:
                rnd.status, rnd.discarded = "negative-delta", True
                rnd.note = "discarded: it degraded the analysis"
                self.trajectory.append(f"R{number} {slot.lens}: discarded (negative delta)")
                if cfg.halting:
                    self._halt("negative_delta", number)
                    halted = True
                    break
                i += 1
                continue
            if (
                reply.new_insight is None
                or max_similarity(reply.new_insight, chain) >= cfg.no_delta_similarity
            ):
                rnd.note = "no new insight" if reply.new_insight is None else "repeats an earlier insight"
                self.trajectory.append(f"R{number} {slot.lens}: no delta")
                if cfg.halting:
                    self._halt("no_delta", number)
                    halted = True
                    break
                i += 1
                continue
            rnd.insight = reply.new_insight
            chain.append(reply.new_insight)
            self.trajectory.append(f"R{number} {slot.lens}: {reply.new_insight}")
            if reply.contradicts and reply.better_supported_than_contradicted:
                record.notes.append(
                    f"round {number} revises round(s) {reply.contradicts} with better support"
                )
            if cfg.halting and not reply.non_trivial:
                self._halt("trivial_delta", number)
                halted = True
                break
            if cfg.halting and reply.status == "stable":
                self._halt("self_consistent", number)
                halted = True
                break
            if number >= 2 and reply.missed_driver and reply.missed_driver not in drivers:  # [D-18]
                if record.reprelude is not None:
                    self._halt("scope_drift", number, "a second missed driver: halted for scope drift")
                    halted = True
                    break
                slots = slots[: i + 1] + await self._reprelude(
                    number, reply.missed_driver, slots[i + 1 :], chain
                )
                drivers = list(record.reprelude["prelude"]["primary_drivers"])
                if self._may_escalate() and record.reprelude["prelude"]["complexity"] >= 4:
                    await self._escalate_to_agent(number, slots[i + 1 :], chain)
                    halted = True
                    break
            if (
                reply.needs_user_verification
                and number >= 2
                and mode == "silent"
                and record.route.get("final_mode") == "silent"
                and self._may_escalate()
            ):
                record.route["final_mode"] = mode = (
                    "trace"  # the remaining rounds (and the earlier ones) are shown
                )
                record.escalation = {
                    "from": "silent",
                    "to": "trace",
                    "after_round": number,
                    "why": "a round surfaced a controversy the user needs to verify",
                }
                record.notes.append(
                    f"escalated silent → trace at round {number}: the user needs to verify a claim"
                )
            i += 1
        skipped = [s.lens for s in slots[i + 1 :]] if halted else []
        if not halted:
            self._halt("max_rounds", len(record.rounds))
        record.halting["skipped_lenses"] = skipped
        record.halting["budget_rounds"] = len(slots)

    def _may_escalate(self) -> bool:
        """A mode forced by keyword or API is not escalated unless the config allows it [D-19]."""
        return not self.record.route.get("forced") or self.config.allow_escalation_of_forced

    async def _escalate_to_agent(self, after_round: int, remaining: list, chain: list[str]) -> None:
        """Re-scored complexity crossed the agent threshold: dispatch the remaining lenses as subagents seeded
        with the insight chain, then merge [§6.4]."""
        from mythos.reason.agent import run_agent

        record = self.record
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
        self._halt("escalated", after_round)
        await run_agent(self, lenses, seed_chain=list(chain), escalated=True)

    async def _reprelude(self, after_round: int, missed: str, remaining: list, chain: list[str]) -> list:
        """Re-diagnose once, keep every prior round, and re-budget only the lenses still to come [§6.4]."""
        new = await self._prelude(tag="reprelude", chain=chain)
        drivers = list(dict.fromkeys([missed] + list(new["primary_drivers"])))[:3]
        new["primary_drivers"] = drivers
        lenses = list(dict.fromkeys(s.lens for s in remaining)) or ["Synthesize"]
        left = max(3, self.config.max_rounds - after_round)
        budget = plan_budget(lenses, drivers, max_rounds=left)
        new["budget"] = [b.to_dict() for b in budget]
        self.record.reprelude = {
            "after_round": after_round,
            "missed_driver": missed,
            "prelude": new,
            "escalation": None,
        }
        if new["complexity"] >= 4 and not self._may_escalate():
            self.record.reprelude["escalation"] = "not performed: the mode was forced [D-19]"
        self.record.notes.append(f"re-Prelude after round {after_round}: missed driver {missed}")
        return expand_rounds(budget)

    # ------------------------------------------------------------------------------------------ agent

    async def _agent(self, lenses: list[AgentLens]) -> None:
        from mythos.reason.agent import run_agent

        await run_agent(self, lenses)

    # ------------------------------------------------------------------------------------------ coda

    def _coda_trajectory(self) -> list[str]:
        record = self.record
        mode = record.route.get("final_mode")
        if mode == "silent" or (mode == "agent" and record.fallback_row == "all_failed"):
            lines = ["Lens path: " + " → ".join(r.lens for r in record.rounds)] + self.trajectory
        else:
            lines = list(self.trajectory)
        if record.halting.get("reason"):
            lines.append(f"halted: {record.halting['reason']} at round {record.halting.get('at_round')}")
        if record.reprelude:
            lines.append(f"re-Prelude after round {record.reprelude['after_round']}")
        return lines

    async def _coda(self) -> None:
        record = self.record
        mode = record.route.get("final_mode") or "direct"
        affordable = self.budget.exhausted() is None
        if (
            affordable
            and self.caller.remaining() > 0
            and mode != "direct"
            and (self.trajectory or record.merge)
        ):
            try:
                reply, rec = await self.caller.call(
                    phase="coda",
                    lens=None,
                    tag="coda",
                    reply_model=CodaReply,
                    prose_field="final_answer",
                    messages=prompts.coda_messages(
                        self.inv.question,
                        record.prelude,
                        mode,
                        self._coda_trajectory(),
                        record.notes + record.fallbacks,
                    ),
                )
            except BudgetExhausted:
                reply, rec = None, None
            if reply is not None:
                self._note_prose(rec)
                record.coda = reply.model_dump()
                return
            why = (
                f"the Coda call failed ({rec.error_kind})" if rec else "the budget was spent before the Coda"
            )
        elif not affordable:
            why = "the budget was spent before the Coda"
        elif self.caller.remaining() <= 0:
            why = "no time was left for the Coda"
        else:
            why = "no usable step finished, so there was nothing to synthesize"
        record.fallbacks.append(f"{why}; the answer below was assembled by the engine, not the model")
        record.coda = self._local_coda()

    def _note_prose(self, rec) -> None:
        if rec is not None and rec.error_kind == "prose":
            self.record.fallbacks.append(
                f"the {rec.phase} reply ignored the JSON format; its prose is the answer"
            )

    def _local_coda(self) -> dict[str, Any]:
        """The answer when no model can give one: what the run did learn, stated plainly."""
        record = self.record
        insights = [r.insight for r in record.rounds if r.insight and not r.discarded]
        findings = [
            f"{s.lens_id}: {s.finding}"
            for s in record.subagents
            if s.finding and s.status in ("ok", "recovered")
        ]
        synthesis = (record.merge or {}).get("synthesis")
        parts = []
        if synthesis:
            parts.append(synthesis)
        if insights:
            parts.append("Insights reached before the run stopped:\n" + "\n".join(f"- {s}" for s in insights))
        if findings:
            parts.append("Independent findings:\n" + "\n".join(f"- {s}" for s in findings))
        if not parts:
            failures = [f"{c.tag}: {c.error_kind}" for c in record.calls if c.status != "ok"]
            parts.append(
                "No answer could be produced: no step that informs an answer succeeded "
                f"({'; '.join(failures[:4]) or 'no call was made'}). Check the backend URL, model and "
                "key, or raise the deadlines."
            )
        return {
            "trajectory": self.trajectory,
            "cross_check": "not performed (engine fallback)",
            "final_answer": "\n\n".join(parts),
            "residual_uncertainty": ["the synthesis step did not run"],
            "load_bearing_assumptions": "unknown — the model's synthesis is missing",
            "fallback": True,
        }


async def think(invocation: str, backend: LLMBackend, config: EngineConfig | None = None) -> RunRecord:
    """Library entry point: ``await think("trace Should we adopt X?", backend)`` → RunRecord."""
    return await Engine(backend, config).run(invocation)


def think_sync(invocation: str, backend: LLMBackend, config: EngineConfig | None = None) -> RunRecord:
    """Blocking wrapper for scripts and the CLI; closes the backend afterwards."""

    async def main() -> RunRecord:
        try:
            return await think(invocation, backend, config)
        finally:
            await backend.aclose()

    return asyncio.run(main())
