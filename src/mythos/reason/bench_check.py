"""Answer checking for ``mythos bench``: one extraction rule for every strategy, strict comparisons.

Every strategy's reply goes through the same ``extract_answer`` (text after the last ``Answer:`` marker, else
the whole reply) and the same comparison, so no strategy is graded more kindly. Replies that are not answers
are counted apart from wrong ones: a *template* answer copies the prompt's own wording, an *echo* restates the
question, *no_answer* is empty.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

OUTCOMES = ("correct", "wrong", "template", "echo", "no_answer", "error", "open")
# outcomes decided from the reply alone (the template check also needs the prompts sent, so it is final)
RECHECKABLE = ("correct", "wrong", "echo", "open")

# placeholders that engine prompts have used as example values; a reply equal to one is never an answer
KNOWN_PLACEHOLDERS = frozenset(
    {
        "the answer",
        "answer",
        "your answer",
        "final answer",
        "one precise sentence",
        "the integrated view",
        "short answer",
        "string",
        "...",
    }
)

_MARKER = re.compile(r"(?:final\s+answer|answer)\s*(?:is)?\s*[:=]", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])[-−]?\$?\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"[a-z0-9]+")
_ARTICLES = ("the ", "a ", "an ")


def extract_answer(text: str) -> str:
    """The answer span of a reply: the rest of the line after the last ``Answer:``, else the whole reply."""
    text = (text or "").strip()
    markers = list(_MARKER.finditer(text))
    if not markers:
        return text
    rest = text[markers[-1].end() :].strip()
    return rest.splitlines()[0].strip() if rest else ""


def normalize(text: str) -> str:
    """Case-folded words only, leading article dropped: ``"The  Oslo."`` → ``"oslo"``."""
    words = " ".join(_WORD.findall(text.casefold().replace("'s", "")))
    for article in _ARTICLES:
        if words.startswith(article):
            words = words[len(article) :]
    return words


def parse_number(text: str) -> Decimal | None:
    """The last number in ``text`` (commas, ``$`` and a Unicode minus allowed), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1].replace(",", "").replace("$", "").replace("−", "-")
    try:
        return Decimal(raw).normalize()
    except InvalidOperation:
        return None


def canonical(span: str, kind: str) -> str:
    """The form votes are compared in: a normalised number, or normalised words."""
    if kind == "number":
        value = parse_number(span)
        return "" if value is None else format(value, "f")
    return normalize(span)


def is_correct(span: str, expected: str, kind: str, choices: tuple[str, ...] | list[str] = ()) -> bool:
    """Numbers: the last number in the span equals the expected value. Lookups: the normalised span equals
    the expected entity, or names exactly one of the question's candidates and that one is right."""
    if kind == "number":
        got, want = parse_number(span), parse_number(expected)
        return got is not None and want is not None and got == want
    got, want = normalize(span), normalize(expected)
    if not got:
        return False
    if got == want:
        return True
    named = {normalize(c) for c in choices if re.search(rf"\b{re.escape(normalize(c))}\b", got)}
    return named == {want}


def _copied(part: str, outside: str, question: str) -> bool:
    norm = normalize(part)
    if norm in KNOWN_PLACEHOLDERS or part.strip().lower() in KNOWN_PLACEHOLDERS:
        return True
    if len(norm.split()) < 2:
        return False
    return f" {norm} " in f" {outside} " and f" {norm} " not in f" {normalize(question)} "


_LABEL = re.compile(r"^\s*(?:[-*•]\s*)?(?:[A-Za-z][\w -]{0,40}:\s*)?")


def is_template(span: str, prompt_text: str, question: str) -> bool:
    """The span is a known placeholder, or copied (two words or more) from the prompts the strategy sent,
    outside the question itself — as a whole, or line by line once list marks and ``Label:`` prefixes are
    stripped (an engine-assembled answer such as ``- Challenge: one sentence``)."""
    if not normalize(span):
        return False
    outside = normalize(prompt_text.replace(question, " "))
    if _copied(span, outside, question):
        return True
    parts = [_LABEL.sub("", line, count=1) for line in span.splitlines()]
    parts = [p for p in parts if normalize(p)]
    return bool(parts) and all(_copied(p, outside, question) for p in parts)


def is_echo(span: str, question: str, threshold: float = 0.7) -> bool:
    """The span restates the question and adds nothing: word-set Jaccard ≥ ``threshold`` (at least four
    words), at most two words the question lacks, and no number the question lacks (a new number is an
    attempt at an answer, right or wrong)."""
    a, b = set(normalize(span).split()), set(normalize(question).split())
    if len(a) < 4 or not b:
        return False
    new = a - b
    if len(new) > 2 or any(word.isdigit() for word in new):
        return False
    return len(a & b) / len(a | b) >= threshold


def classify(
    reply: str,
    *,
    expected: str,
    kind: str,
    question: str,
    prompt_text: str = "",
    choices: tuple[str, ...] | list[str] = (),
) -> tuple[str, str]:
    """(outcome, answer span). Order: no_answer, template, correct, echo, wrong (open questions: ``open``
    unless empty, template or echo). A right answer that also restates the question still counts as right."""
    span = extract_answer(reply)
    if not normalize(span):
        return "no_answer", span
    if is_template(span, prompt_text, question):
        return "template", span
    if kind != "open" and is_correct(span, expected, kind, choices):
        return "correct", span
    if is_echo(span, question):
        return "echo", span
    return ("open" if kind == "open" else "wrong"), span
