"""Halting for the silent/trace rounds, as a pure function of the reply and the chain (protocol §6).

``judge_round`` decides what a round's reply means — accept its insight, discard it, or count it as no
delta — and whether the loop stops, without touching the run. The loop applies the verdict; re-Prelude and
escalation (which make calls) stay in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from mythos.reason.schemas import RoundReply
from mythos.reason.similarity import max_similarity
from mythos.reason.vocab import HaltReason, RoundStatus


@dataclass(frozen=True)
class HaltingConfig:
    """The part of the engine config halting reads (``EngineConfig`` satisfies it too)."""

    halting: bool = True  # False runs every budgeted round (the counterfactual for measuring savings)
    no_delta_similarity: float = 0.9


@dataclass(frozen=True)
class Verdict:
    status: str  # the round's status as recorded (RoundStatus)
    insight: str | None  # the accepted insight, None when nothing was accepted
    discarded: bool = False
    halt: HaltReason | None = None  # why the loop stops after this round, None to go on
    note: str | None = None  # the round's note in the record
    trajectory: str = ""  # the line this round adds to the trajectory (without the "R{n} {lens}: " prefix)
    revises: list[int] | None = None  # earlier rounds this one revises with better support


def judge_round(reply: RoundReply | None, chain: list[str], config: HaltingConfig) -> Verdict:
    """What one round's reply means for the run. ``reply`` None is a failed round; ``chain`` is the list of
    insights accepted so far."""
    if reply is None:
        return Verdict(RoundStatus.FAILED, None, halt=HaltReason.ROUND_FAILED, trajectory="failed")
    halting = config.halting
    negative = (
        reply.introduces_confusion
        or reply.status == RoundStatus.NEGATIVE_DELTA
        or (bool(reply.contradicts) and reply.better_supported_than_contradicted is False)
    )
    if negative:
        return Verdict(
            RoundStatus.NEGATIVE_DELTA,
            None,
            discarded=True,
            halt=HaltReason.NEGATIVE_DELTA if halting else None,
            note="discarded: it degraded the analysis",
            trajectory="discarded (negative delta)",
        )
    if reply.new_insight is None or max_similarity(reply.new_insight, chain) >= config.no_delta_similarity:
        return Verdict(
            reply.status,
            None,
            halt=HaltReason.NO_DELTA if halting else None,
            note="no new insight" if reply.new_insight is None else "repeats an earlier insight",
            trajectory="no delta",
        )
    halt = None
    if halting and not reply.non_trivial:
        halt = HaltReason.TRIVIAL_DELTA
    elif halting and reply.status == RoundStatus.STABLE:
        halt = HaltReason.SELF_CONSISTENT
    revises = reply.contradicts if reply.contradicts and reply.better_supported_than_contradicted else None
    return Verdict(reply.status, reply.new_insight, halt=halt, trajectory=reply.new_insight, revises=revises)
