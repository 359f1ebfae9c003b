"""Auto-contradictions: agents that cite the same direct span but say different things.

The reference compares all n(n-1)/2 pairs (33 minutes at 100k records). Only pairs that share a direct id can
fire, so we index records by id in a hash map and only look at pairs inside each id's bucket: Σ k_id² work, which
is linear while fan-in per span is bounded.
"""

from __future__ import annotations

import re

from .sources import CONTRADICTION_PREFIXES, parse_file_id, parse_span

INFRASTRUCTURE_KINDS = frozenset({"subagent-session", "blocker", "objective"})
COMPATIBLE_KIND_PAIRS = frozenset(
    frozenset(pair)
    for pair in (
        ("observation", "proposal"),
        ("observation", "root-cause"),
        ("gap", "proposal"),
        ("missing-check", "proposal"),
        ("root-cause", "symptom"),
        ("failure-mode", "proposal"),
        ("proposal", "risk"),
    )
)
HIGH_KINDS = frozenset({"code-change", "root-cause", "test-change"})
LOW_KINDS = frozenset({"observation", "measurement", "symptom"})
_TOKEN = re.compile(r"[a-z0-9]+")


def _severity(kind_a: str, kind_b: str) -> str:
    if kind_a in HIGH_KINDS and kind_b in HIGH_KINDS:
        return "high"
    if kind_a in LOW_KINDS and kind_b in LOW_KINDS:
        return "low"
    return "medium"


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def detect_contradictions(evidence: list[dict]) -> list[dict]:
    """Contradictions between evidence records, sorted by id (same rules as the reference, see docs)."""
    buckets: dict[str, list[int]] = {}
    spans: dict[str, list[tuple[int, int, int, str]]] = {}
    direct: list[frozenset[str] | None] = []
    for index, record in enumerate(evidence):
        if record["kind"] in INFRASTRUCTURE_KINDS:
            direct.append(None)
            continue
        ids = frozenset(sid for sid in record["source_ids"] if sid.startswith(CONTRADICTION_PREFIXES))
        direct.append(ids)
        for sid in ids:
            buckets.setdefault(sid, []).append(index)
            if sid.startswith("file:"):
                _add_span(spans, sid, index)

    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        for position, left in enumerate(members):
            for right in members[position + 1 :]:
                pairs.add((left, right))
    overlaps = _overlapping_spans(spans)
    pairs.update(overlaps)

    tokens: dict[int, frozenset[str]] = {}

    def tokens_of(index: int) -> frozenset[str]:
        found = tokens.get(index)
        if found is None:
            found = tokens[index] = frozenset(_TOKEN.findall(evidence[index]["summary"].lower()))
        return found

    emitted: dict[str, dict] = {}
    for left, right in sorted(pairs):
        a, b = evidence[left], evidence[right]
        if a["summary"] == b["summary"]:
            continue
        kind_a, kind_b = a["kind"], b["kind"]
        if frozenset((kind_a, kind_b)) in COMPATIBLE_KIND_PAIRS and kind_a != kind_b:
            continue
        agent_a, agent_b = a.get("agent_id"), b.get("agent_id")
        lane_a, lane_b = a.get("lane"), b.get("lane")
        if not (
            (agent_a is not None and agent_b is not None and agent_a != agent_b)
            or (lane_a is not None and lane_b is not None and lane_a != lane_b)
        ):
            continue
        if kind_a == kind_b and _jaccard(tokens_of(left), tokens_of(right)) >= 0.5:
            continue
        low, high = sorted((a["id"], b["id"]))
        con_id = f"con:auto:{low}:{high}"
        if con_id in emitted:
            continue
        exact = direct[left] & direct[right]  # type: ignore[operator]
        near = overlaps.get((left, right), set())
        shared = sorted(exact | near)
        shared_set = set(shared)
        where = "the same direct span" if not near - exact else "overlapping direct spans"
        # Quote each summary next to its own id (the reference quoted in file order and could swap them).
        first, second = (a, b) if a["id"] <= b["id"] else (b, a)
        contradiction = {
            "id": con_id,
            "summary": f"Evidence {low} and {high} disagree on {where} ({', '.join(shared)}): "
            f'"{first["summary"]}" vs "{second["summary"]}"',
            "conflicting_item_ids": [low, high],
            "severity": _severity(kind_a, kind_b),
            "source_ids": shared,
        }
        refs: dict[str, dict] = {}
        for record in (a, b):
            for ref in record.get("source_refs", ()):
                if ref["source_id"] in shared_set and ref["source_id"] not in refs:
                    refs[ref["source_id"]] = ref
        if refs:
            contradiction["source_refs"] = [refs[key] for key in sorted(refs)]
        emitted[con_id] = contradiction
    return [emitted[key] for key in sorted(emitted)]


def _add_span(spans: dict[str, list[tuple[int, int, int, str]]], sid: str, index: int) -> None:
    parsed = parse_file_id(sid)
    bounds = parse_span(parsed[1]) if parsed else None
    if parsed and bounds and bounds[0] <= bounds[1]:
        spans.setdefault(parsed[0], []).append((bounds[0], bounds[1], index, sid))


def _overlapping_spans(spans: dict[str, list[tuple[int, int, int, str]]]) -> dict[tuple[int, int], set[str]]:
    """Record pairs citing different but overlapping line ranges of one file (``10`` vs ``8-12``).

    A sweep over each file's ranges sorted by start keeps only ranges still open, so the work is the number of
    overlapping pairs plus n log n, not all pairs. The reference matched identical ids only.
    """
    found: dict[tuple[int, int], set[str]] = {}
    for items in spans.values():
        if len(items) < 2:
            continue
        items.sort()
        active: list[tuple[int, int, int, str]] = []
        for start, end, index, sid in items:
            active = [item for item in active if item[1] >= start]
            for _, _, other, other_sid in active:
                if other != index and other_sid != sid:
                    found.setdefault((min(other, index), max(other, index)), set()).update((other_sid, sid))
            active.append((start, end, index, sid))
    return found
