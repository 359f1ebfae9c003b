"""A cheap, deterministic textual similarity for the engine-side "no delta" and "rephrase" checks.

The protocol suggests an embedding model; none ships with the core install, so the engine uses word-set
Jaccard similarity as a second opinion beside the model's own verdict. It only catches near-verbatim
repeats — which is the failure small models actually show (echoing the chain or the question back).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "be",
        "it",
        "this",
        "that",
        "with",
        "as",
        "by",
        "at",
    ]
)


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def jaccard(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def max_similarity(text: str, others: list[str]) -> float:
    return max((jaccard(text, other) for other in others), default=0.0)
