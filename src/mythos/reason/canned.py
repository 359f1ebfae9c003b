"""Deterministic, well-formed replies for every phase — the script behind the scripted backend and the
loopback test server.

A ``CannedPlan`` fixes the diagnosis (complexity checks, drivers, problem type) and the convergence status of
each round, so a run's shape (route, budget, halting round, fallbacks) is known in advance. The five
calibration questions have plans that exercise what each case is meant to test; any other question gets
``DEFAULT_PLAN``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mythos.reason import prompts
from mythos.reason.lenses import LENSES, base_lens

if TYPE_CHECKING:
    from mythos.reason.scripted import Fault, ScriptedRequest


@dataclass(frozen=True)
class CannedPlan:
    checks: tuple[str, ...] = ("multi_hop", "ambiguous_tradeoffs", "hidden_assumptions")
    drivers: tuple[str, ...] = ("Trade-offs",)
    problem_type: str = "standard"
    sequence: tuple[str, ...] | None = None
    sequence_reason: str | None = None
    round_status: dict[int, str] = field(default_factory=lambda: {4: "stable"})
    topic: str = "the question"


CALIBRATION_PLANS: dict[str, CannedPlan] = {
    "Should I use SQLite or PostgreSQL for a single-user desktop app?": CannedPlan(
        checks=("ambiguous_tradeoffs", "hidden_assumptions"),
        drivers=("Trade-offs",),
        round_status={3: "stable"},
        topic="the embedded database choice",
    ),
    "Our startup has 3 months of runway and our product has good reviews but declining retention. Pivot or stay?": CannedPlan(
        checks=("multi_hop", "ambiguous_tradeoffs", "hidden_assumptions", "high_stakes"),
        drivers=("Trade-offs",),
        problem_type="custom",
        sequence=("Clarify", "Expand", "Scar-Tissue", "Tradeoff-Map", "Synthesize"),
        sequence_reason="a bet-the-company choice: enumerate alternatives, learn from startup failure "
        "patterns, then weigh the trade-offs",
        round_status={5: "stable"},
        topic="the runway decision",
    ),
    "Design a caching strategy for a read-heavy API serving 10M users": CannedPlan(
        checks=("multi_hop", "hidden_assumptions", "novel_domain"),
        drivers=("Hidden assumptions",),
        problem_type="technical_design",
        sequence_reason="a technical design: boundaries break caches",
        round_status={3: "stable"},
        topic="the cache design",
    ),
    "What would make our code review process 10x more effective?": CannedPlan(
        checks=("multi_hop", "ambiguous_tradeoffs", "hidden_assumptions"),
        drivers=("Hidden assumptions",),
        round_status={3: "breakthrough", 4: "stable"},
        topic="the review process",
    ),
    "Is it ethical to train AI on public web data without consent?": CannedPlan(
        checks=("multi_hop", "ambiguous_tradeoffs", "hidden_assumptions", "novel_domain", "high_stakes"),
        drivers=("Hidden assumptions", "Trade-offs"),
        problem_type="debate",
        sequence_reason="a contested ethical question: build both sides before judging",
        round_status={5: "stable"},
        topic="consent and public data",
    ),
}

DEFAULT_PLAN = CannedPlan()
LOOKUP_PLAN = CannedPlan(checks=(), drivers=(), round_status={}, topic="a lookup")

_QUESTION = re.compile(r"<<<\n(.*?)\n>>>", re.DOTALL)


def question_of(messages: list[dict[str, str]]) -> str:
    for message in messages:
        match = _QUESTION.search(message["content"])
        if match:
            return match.group(1)
    return ""


def plan_for(question: str) -> CannedPlan:
    if question in CALIBRATION_PLANS:
        return CALIBRATION_PLANS[question]
    if len(question.split()) <= 4:  # "What is 2+2?" and friends: a lookup, routed direct
        return LOOKUP_PLAN
    return DEFAULT_PLAN


def _prelude(question: str, plan: CannedPlan) -> dict[str, Any]:
    return {
        "question_restated": f"Precisely: {question}",
        "not_asking": [f"a general essay about {plan.topic}"],
        "complexity_checks": {
            name: name in plan.checks
            for name in (
                "multi_hop",
                "ambiguous_tradeoffs",
                "hidden_assumptions",
                "novel_domain",
                "high_stakes",
            )
        },
        "primary_drivers": list(plan.drivers),
        "difficulty_diagnosis": f"{plan.topic} hides competing constraints",
        "problem_type": plan.problem_type,
        "sequence": list(plan.sequence) if plan.sequence else None,
        "sequence_reason": plan.sequence_reason,
        "success_criterion": "a recommendation with its conditions stated",
    }


def _round(number: int, lens: str, application: int, plan: CannedPlan) -> dict[str, Any]:
    status = plan.round_status.get(number, "evolving")
    angle = "a second, deeper angle on" if application == 2 else "the angle of"
    insight = (
        f"Round {number} takes {angle} {lens}: {LENSES[base_lens(lens)].question.lower().rstrip('?')} "
        f"reshapes {plan.topic} (point {number})."
    )
    return {
        "analysis": f"{lens} applied to {plan.topic}",
        "new_insight": insight,
        "what_changed": f"before round {number} this was open; now it is narrowed",
        "contradicts": [],
        "better_supported_than_contradicted": None,
        "non_trivial": True,
        "introduces_confusion": False,
        "status": status,
        "missed_driver": None,
        "needs_user_verification": False,
    }


def _subagent(letter: str, lens_id: str, plan: CannedPlan) -> dict[str, Any]:
    lens = LENSES[base_lens(lens_id)]
    side = ""
    if lens_id.endswith("-Pro"):
        side = " (the case for)"
    elif lens_id.endswith("-Anti"):
        side = " (the case against)"
    return {
        "independent_finding": f"Subagent {letter} via {lens_id}{side}: {lens.question.lower().rstrip('?')} "
        f"is what decides {plan.topic}.",
        "reasoning": f"Applying {lens.name} to {plan.topic}: {lens.method}",
        "confidence": "medium",
        "tension_flag": f"{lens_id} weighs risk differently from the other lenses"
        if letter in "AB"
        else None,
    }


def _merge(messages: list[dict[str, str]], plan: CannedPlan) -> dict[str, Any]:
    letters = re.findall(r"^([A-Z]) \(", messages[-1]["content"], re.MULTILINE)
    tensions = (
        [
            {
                "between": letters[:2],
                "claim": f"how much {plan.topic} should weigh risk",
                "better_supported": "neither",
            }
        ]
        if len(letters) >= 2
        else []
    )
    return {
        "convergent_points": [f"every usable lens found that {plan.topic} turns on stated constraints"],
        "tensions": tensions,
        "synthesis": f"The findings agree on the constraints and keep an open tension over {plan.topic}.",
        "coverage": {"all_represented": True, "dropped": [], "low_confidence_flagged": False},
    }


def _coda(plan: CannedPlan, tag: str) -> dict[str, Any]:
    # Structure only: the answer never contains a calibration case's keywords, so a content check run on the
    # scripted backend could not pass by construction (calibration reports them as not applicable).
    return {
        "trajectory": [f"{tag}: the steps above"],
        "cross_check": "consistent with every step",
        "final_answer": f"For {plan.topic}, the answer depends on the stated constraints; choose the option whose failure "
        "modes you can afford and revisit it when the constraints change.",
        "residual_uncertainty": ["the real workload and constraints are assumed, not measured"],
        "load_bearing_assumptions": f"the constraints of {plan.topic} are as stated",
    }


def canned_reply(tag: str, messages: list[dict[str, str]]) -> str:
    """The JSON reply for one call, chosen by the call's tag and the question it carries."""
    question = question_of(messages)
    plan = plan_for(question)
    parts = tag.split(":")
    phase = parts[0]
    if phase in ("prelude", "reprelude"):
        data = _prelude(question, plan)
    elif phase == "round":
        data = _round(int(parts[1]), parts[2], int(parts[3]) if len(parts) > 3 else 1, plan)
    elif phase in ("sub", "recovery"):
        data = _subagent(parts[1], parts[2], plan)
    elif phase == "merge":
        data = _merge(messages, plan)
    elif phase == "verify":
        data = {"verdict": "unsure", "check": "the scripted backend cannot check an answer"}
    elif phase == "sample":
        data = {"reasoning": f"{tag}: the steps", "final_answer": f"the constraints of {plan.topic}"}
    else:  # coda, direct, silent
        data = _coda(plan, tag)
    return json.dumps(data, ensure_ascii=False)


def tag_of(messages: list[dict[str, str]]) -> str:
    """The call's tag (``prompts.tag_of``), or "coda" for a prompt without one."""
    return prompts.tag_of(messages) or "coda"


def canned_responder(faults: dict[str, Fault | list[Fault | None]] | None = None):
    """A responder for ScriptedBackend. ``faults`` maps a tag (or a tag prefix ending in ``*``) to a Fault,
    or to a list consumed attempt by attempt (None in the list means: answer normally)."""
    faults = faults or {}

    def respond(request: ScriptedRequest) -> str | Fault:
        for key, fault in faults.items():
            if key == request.tag or (key.endswith("*") and request.tag.startswith(key[:-1])):
                if isinstance(fault, list):
                    chosen = fault[request.attempt - 1] if request.attempt <= len(fault) else None
                    if chosen is not None:
                        return chosen
                else:
                    return fault
        return canned_reply(request.tag, request.messages)

    return respond


PHASE_MODELS = {
    "prelude": "PreludeReply",
    "reprelude": "PreludeReply",
    "round": "RoundReply",
    "sub": "SubagentReply",
    "recovery": "SubagentReply",
    "merge": "MergeReply",
    "verify": "VerifyReply",
    "sample": "SampleReply",
}


def template_reply(tag: str) -> str:
    """What a small model too often returns: the prompt's reply shape copied verbatim, placeholders and all."""
    from mythos.reason import schemas

    model = getattr(schemas, PHASE_MODELS.get(tag.split(":")[0], "CodaReply"))
    return json.dumps(schemas.shape_dict(model), ensure_ascii=False)
