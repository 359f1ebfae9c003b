"""Prompt builders, one per phase. Every prompt re-sends the verbatim question (the re-injected input).

The last line of each prompt names the call (``mythos-call: round:3:Challenge``) so transcripts, scripted
backends and the loopback test server can tell phases apart without parsing prose. It comes last so every
call of a run shares the longest possible prefix (system prompt, question, Prelude) for a server's prefix
cache. Reply shapes are rendered from the pydantic models in ``schemas.py``: placeholders are descriptions
in angle brackets, never plausible values a small model could copy as its answer.
"""

from __future__ import annotations

from typing import Any

from mythos.reason.backends import Message
from mythos.reason.lenses import DRIVERS, LENSES, SEQUENCES, base_lens
from mythos.reason.schemas import (
    CodaReply,
    MergeReply,
    PreludeReply,
    RoundReply,
    SampleReply,
    SubagentReply,
    VerifyReply,
    shape_text,
)

TAG_PREFIX = "mythos-call: "

ROLE = (
    "You are one step of a structured reasoning engine. Think carefully, be concrete and specific to the "
    "question, and reply with a single JSON object exactly in the requested shape."
)


def _messages(tag: str, body: list[str]) -> list[Message]:
    """System prompt (the same for every call), then the body with the call tag as its last line."""
    return [
        {"role": "system", "content": ROLE},
        {"role": "user", "content": "\n\n".join(body) + f"\n\n{TAG_PREFIX}{tag}"},
    ]


def tag_of(messages: list[Message]) -> str | None:
    """The call tag a prompt carries (the last ``mythos-call:`` line of any message), or None."""
    found = None
    for message in messages:
        for line in message.get("content", "").splitlines():
            if line.startswith(TAG_PREFIX):
                found = line[len(TAG_PREFIX) :].strip()
    return found


def question_block(question: str) -> str:
    return f"QUESTION (verbatim; re-read it before you answer):\n<<<\n{question}\n>>>"


def prelude_summary(prelude: dict[str, Any]) -> str:
    lines = [f"Restated: {prelude.get('question_restated', '')}"]
    if prelude.get("not_asking"):
        lines.append("Not asking: " + "; ".join(prelude["not_asking"]))
    lines.append(
        f"Complexity: {prelude.get('complexity')}/5; drivers: {', '.join(prelude.get('primary_drivers', []))}"
    )
    if prelude.get("difficulty_diagnosis"):
        lines.append(f"What makes it hard: {prelude['difficulty_diagnosis']}")
    if prelude.get("success_criterion"):
        lines.append(f"Success: {prelude['success_criterion']}")
    return "PRELUDE:\n" + "\n".join(lines)


def prelude_messages(
    question: str, tag: str = "prelude", prior_chain: list[str] | None = None
) -> list[Message]:
    types = ", ".join(SEQUENCES)
    body = [
        question_block(question),
        "Diagnose the question before anyone answers it. Restate it more precisely; list what it is NOT asking; "
        "answer the five complexity checks honestly (true/false); pick 1-3 primary drivers from: "
        f"{', '.join(DRIVERS)}; say what makes it hard; pick a problem type from: {types} (or 'custom' with your "
        "own lens sequence from: " + ", ".join(LENSES) + ") and give a reason when it is not 'standard'; and "
        "state what would make an answer good enough to stop.",
    ]
    if prior_chain:
        body.append(
            "This is a RE-DIAGNOSIS: the earlier diagnosis missed a driver. Insights so far:\n"
            + "\n".join(f"R{i + 1}: {s}" for i, s in enumerate(prior_chain))
        )
    body.append(shape_text(PreludeReply))
    return _messages(tag, body)


def lens_block(lens_id: str) -> str:
    lens = LENSES[base_lens(lens_id)]
    framing = lens_id[len(lens.name) + 1 :] if lens_id != lens.name else ""
    text = f"LENS: {lens.name}{f' (framing: {framing})' if framing else ''}\nAsk: {lens.question}\nMethod: {lens.method}"
    if lens.name == "Steelman" and framing:
        side = "in favour of" if framing.lower() == "pro" else "against"
        text += f"\nBuild the strongest case {side} the proposition in the question."
    return text


def round_messages(
    question: str,
    prelude: dict[str, Any],
    chain: list[str],
    lens: str,
    application: int,
    number: int,
    tag: str,
) -> list[Message]:
    body = [question_block(question), prelude_summary(prelude)]
    if chain:
        body.append(
            "INSIGHT CHAIN (accepted insights of earlier rounds):\n"
            + "\n".join(f"R{i + 1}: {s}" for i, s in enumerate(chain))
        )
    body.append(f"ROUND {number}. " + lens_block(lens))
    if application == 2:
        body.append(
            "This is the SECOND application of this lens: take a new angle, stress-test the first "
            "application, or go one level deeper. Never restate it."
        )
    body.append(
        "Produce exactly one concrete new insight in one sentence, or null if you have nothing new "
        "(rephrasing is not an insight). Report whether it contradicts earlier insights (round numbers) "
        "and whether it is better supported than what it contradicts; whether it would change the answer "
        "(non_trivial); whether it introduces confusion; and a status: evolving (more to find), "
        "breakthrough (a reframing that changes the answer), stable (the view is settled) or "
        "negative-delta (this round makes things worse). If the diagnosis missed a driver, name it."
    )
    body.append(shape_text(RoundReply))
    return _messages(tag, body)


def subagent_messages(
    question: str,
    prelude: dict[str, Any],
    lens_id: str,
    total: int,
    tag: str,
    recovery: bool = False,
    seed_chain: list[str] | None = None,
) -> list[Message]:
    who = (
        "You are re-running one analyst's lens that failed, on your own."
        if recovery
        else f"You are one of {total} independent analysts working in parallel; you will not see the others' work "
        "and they will not see yours."
    )
    body = [who, question_block(question), prelude_summary(prelude)]
    if seed_chain:
        body.append(
            "INSIGHTS ALREADY ESTABLISHED (earlier sequential rounds; build beyond them):\n"
            + "\n".join(f"R{i + 1}: {s}" for i, s in enumerate(seed_chain))
        )
    body += [
        lens_block(lens_id),
        "Give one specific, novel, falsifiable finding in one sentence — or exactly 'No novel insight under "
        "this lens — <reason>' rather than padding. Do not drift toward what you guess the others will say. "
        "Explain your reasoning in 3-8 sentences that reference the question.",
        shape_text(SubagentReply),
    ]
    return _messages(tag, body)


def merge_messages(
    question: str,
    prelude: dict[str, Any],
    packet_findings: list[dict[str, Any]],
    failure_notes: list[str],
    lone_tensions: list[str],
    tag: str = "merge",
    silent_merge: bool = False,
    from_packet: bool = False,
    vote: str | None = None,
) -> list[Message]:
    lines = []
    for f in packet_findings:
        flag = " [LOW CONFIDENCE: contradicts the others without support]" if f.get("low_confidence") else ""
        lines.append(
            f"{f['letter']} ({f['lens']}, confidence {f.get('confidence', '?')}){flag}: {f['finding']}"
        )
        if f.get("tension_flag"):
            lines.append(f"   tension flagged: {f['tension_flag']}")
    body = [
        question_block(question),
        prelude_summary(prelude),
        f"FINDINGS ({'from the compiled packet, ' if from_packet else ''}one per independent subagent):\n"
        + "\n".join(lines),
    ]
    if failure_notes:
        body.append("FAILED SUBAGENTS:\n" + "\n".join(failure_notes))
    if lone_tensions:
        body.append(
            "POSSIBLE BLIND SPOTS (a tension raised by only one subagent — weigh it extra):\n"
            + "\n".join(lone_tensions)
        )
    if vote:
        body.append(vote)
    if silent_merge:
        body.append(
            "Too few findings were usable to warrant a forced synthesis: integrate what there is "
            "quietly, and do not invent agreement."
        )
    body.append(
        "Merge: list the points present in at least two findings; list the genuine tensions (which "
        "findings, the claim, which side is better supported); write a synthesis that preserves "
        "irreducible tensions instead of a false compromise; and check coverage."
    )
    body.append(shape_text(MergeReply))
    return _messages(tag, body)


def coda_messages(
    question: str,
    prelude: dict[str, Any],
    mode: str,
    trajectory: list[str],
    notes: list[str],
    tag: str = "coda",
    vote: str | None = None,
) -> list[Message]:
    body = [
        question_block(question),
        prelude_summary(prelude),
        f"MODE: {mode}\nTRAJECTORY:\n" + "\n".join(f"- {t}" for t in trajectory),
    ]
    if notes:
        body.append("NOTES FROM THE ENGINE:\n" + "\n".join(f"- {n}" for n in notes))
    if vote:
        body.append(vote)
    body.append(
        "Write the Coda: review the trajectory, cross-check the answer against every step, then give "
        "the final answer (the answer itself, 1-5 paragraphs, not a summary of the process), the residual "
        "uncertainty, and one line naming the load-bearing assumptions."
    )
    body.append(shape_text(CodaReply))
    return _messages(tag, body)


def direct_messages(question: str, prelude: dict[str, Any]) -> list[Message]:
    body = [
        question_block(question),
        prelude_summary(prelude),
        "This is a simple question: answer it directly in 1-3 sentences and note any residual uncertainty "
        "briefly (or 'none').",
        shape_text(CodaReply),
    ]
    return _messages("direct", body)


def silent_single_messages(question: str, prelude: dict[str, Any], lens_path: list[str]) -> list[Message]:
    body = [
        question_block(question),
        prelude_summary(prelude),
        "Apply these lenses in order in your own hidden reasoning, re-reading the question before each, "
        "stopping early once the view is settled: " + " -> ".join(lens_path) + ". Do not show the rounds; "
        "return only the Coda.",
        shape_text(CodaReply),
    ]
    return _messages("silent", body)


def verify_messages(question: str, candidate: str, support: str, tag: str) -> list[Message]:
    """The verifier of the vote step: check one candidate answer on its own merits, not on its vote count."""
    body = [
        question_block(question),
        f"CANDIDATE ANSWER: {candidate}\nSUPPORT (one analyst's reasoning for it):\n{support or '(none given)'}",
        "Check the candidate yourself, step by step, from the question alone: is it correct? How many "
        "analysts proposed it does not matter. Say unsure when the question cannot be checked.",
        shape_text(VerifyReply),
    ]
    return _messages(tag, body)


def sample_messages(question: str, tag: str) -> list[Message]:
    """One independent step-by-step sample (self-consistency): reasoning, then a short final answer."""
    body = [
        question_block(question),
        "Think step by step, then give the final answer.",
        shape_text(SampleReply),
    ]
    return _messages(tag, body)
