"""Auto-contradictions: agents that cite the same direct span but say different things.

Two records contradict when they share a direct span and every rule in ``CONTRADICTION_RULES`` holds for the pair
(the rules are the reference's filters, written once as named predicates).

Two forms: ``pairwise`` emits one entry per contradicting pair (the reference's layout, byte-compatible); ``grouped``
(the default) emits one entry per shared span with every member that disagrees with another member, so a hot span
cited by k agents is one entry of k members instead of k(k-1)/2 pairs.

The reference compares all n(n-1)/2 pairs (33 minutes at 100k records). Only pairs that share a direct id can
fire, so we index records by id in a hash map and only look inside each id's bucket.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .sources import CONTRADICTION_PREFIXES, parse_file_id, parse_span
from .vocab import COMPATIBLE_KIND_PAIRS, INFRASTRUCTURE_KINDS, LOW_KINDS, STRONG_KINDS, Severity

_TOKEN = re.compile(r"[a-z0-9]+")
SIMILAR_WORDING = 0.5  # token Jaccard at or above which two same-kind summaries say the same thing
GROUP_SUMMARY_QUOTES = 3  # distinct claims quoted in a grouped entry's summary (all are in its members)
QUOTE_CHARS = 160


class _Tokens:
    """Lower-cased word sets of summaries, computed on first use."""

    def __init__(self, evidence: list[dict]):
        self.evidence = evidence
        self.cache: dict[int, frozenset[str]] = {}

    def __call__(self, index: int) -> frozenset[str]:
        found = self.cache.get(index)
        if found is None:
            found = self.cache[index] = frozenset(_TOKEN.findall(self.evidence[index]["summary"].lower()))
        return found


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Rule:
    """A named condition that must hold for two records on one span to count as contradicting."""

    name: str
    description: str
    holds: Callable[[dict, dict, int, int, _Tokens], bool]


def _different_claims(a: dict, b: dict, *_: object) -> bool:
    return a["summary"] != b["summary"]


def _incompatible_kinds(a: dict, b: dict, *_: object) -> bool:
    return a["kind"] == b["kind"] or frozenset((a["kind"], b["kind"])) not in COMPATIBLE_KIND_PAIRS


def _independent_sources(a: dict, b: dict, *_: object) -> bool:
    agent_a, agent_b = a.get("agent_id"), b.get("agent_id")
    lane_a, lane_b = a.get("lane"), b.get("lane")
    return (agent_a is not None and agent_b is not None and agent_a != agent_b) or (
        lane_a is not None and lane_b is not None and lane_a != lane_b
    )


def _dissimilar_wording(a: dict, b: dict, left: int, right: int, tokens: _Tokens) -> bool:
    return a["kind"] != b["kind"] or _jaccard(tokens(left), tokens(right)) < SIMILAR_WORDING


CONTRADICTION_RULES: tuple[Rule, ...] = (
    Rule("different-claims", "the two summaries differ", _different_claims),
    Rule(
        "incompatible-kinds",
        "the kinds are not a pair that answer each other (observation/proposal, root-cause/symptom, ...)",
        _incompatible_kinds,
    ),
    Rule("independent-sources", "different agents, or different lanes", _independent_sources),
    Rule(
        "dissimilar-wording",
        f"different kinds, or the same kind with word overlap (Jaccard) below {SIMILAR_WORDING}",
        _dissimilar_wording,
    ),
)


def contradicts(evidence: list[dict], left: int, right: int, tokens: _Tokens) -> bool:
    """True when every rule holds for the pair (both records already share a direct span)."""
    a, b = evidence[left], evidence[right]
    return all(rule.holds(a, b, left, right, tokens) for rule in CONTRADICTION_RULES)


def pair_severity(kind_a: str, kind_b: str) -> str:
    if kind_a in STRONG_KINDS and kind_b in STRONG_KINDS:
        return Severity.HIGH.value
    if kind_a in LOW_KINDS and kind_b in LOW_KINDS:
        return Severity.LOW.value
    return Severity.MEDIUM.value


def _index(evidence: list[dict]):
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
    return buckets, spans, direct


def detect_contradictions(evidence: list[dict], form: str = "pairwise") -> list[dict]:
    """Contradictions between evidence records, sorted by id, in the given form (``pairwise`` or ``grouped``)."""
    if form == "grouped":
        return detect_grouped(evidence)
    buckets, spans, direct = _index(evidence)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        for position, left in enumerate(members):
            for right in members[position + 1 :]:
                pairs.add((left, right))
    overlaps = _overlapping_spans(spans)
    pairs.update(overlaps)
    tokens = _Tokens(evidence)
    emitted: dict[str, dict] = {}
    for left, right in sorted(pairs):
        if not contradicts(evidence, left, right, tokens):
            continue
        a, b = evidence[left], evidence[right]
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
            "severity": pair_severity(a["kind"], b["kind"]),
            "source_ids": shared,
        }
        refs = _refs((a, b), shared_set)
        if refs:
            contradiction["source_refs"] = refs
        emitted[con_id] = contradiction
    return [emitted[key] for key in sorted(emitted)]


def _refs(records, wanted: set[str]) -> list[dict]:
    refs: dict[str, dict] = {}
    for record in records:
        for ref in record.get("source_refs", ()):
            if ref["source_id"] in wanted and ref["source_id"] not in refs:
                refs[ref["source_id"]] = ref
    return [refs[key] for key in sorted(refs)]


def detect_grouped(evidence: list[dict]) -> list[dict]:
    """One entry per shared span (a direct id, or a file's line ranges that overlap, transitively).

    Members are the records on the span that contradict at least one other record there. Records with the same
    (summary, kind, agent, lane) behave identically under every rule, so the search runs over those signatures and
    stops at each one's first contradicting partner: linear in records for a hot span with a bounded number of
    distinct claims, and never materialises the k(k-1)/2 pairs.
    """
    buckets, spans, _ = _index(evidence)
    parent = {sid: sid for sid in buckets}

    def find(sid: str) -> str:
        while parent[sid] != sid:
            parent[sid] = parent[parent[sid]]
            sid = parent[sid]
        return sid

    for items in spans.values():
        ranges = sorted({(start, end, sid) for start, end, _, sid in items})
        reach_end, reach_sid = -1, None
        for start, end, sid in ranges:
            if reach_sid is not None and start <= reach_end:
                a, b = find(sid), find(reach_sid)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if end > reach_end:
                reach_end, reach_sid = end, sid
    clusters: dict[str, list[str]] = {}
    for sid in buckets:
        clusters.setdefault(find(sid), []).append(sid)
    tokens = _Tokens(evidence)
    groups: list[dict] = []
    for sids in clusters.values():
        members = sorted({index for sid in sids for index in buckets[sid]})
        if len(members) < 2:
            continue
        group = _group(evidence, sorted(sids), members, tokens)
        if group is not None:
            groups.append(group)
    groups.sort(key=lambda con: con["id"])
    return groups


def _group(evidence: list[dict], sids: list[str], members: list[int], tokens: _Tokens) -> dict | None:
    by_signature: dict[tuple, list[int]] = {}
    for index in members:
        record = evidence[index]
        key = (record["summary"], record["kind"], record.get("agent_id"), record.get("lane"))
        by_signature.setdefault(key, []).append(index)
    heads = [indices[0] for indices in by_signature.values()]
    if len(heads) < 2:
        return None
    firing = [False] * len(heads)
    for i, left in enumerate(heads):
        if firing[i]:
            continue
        for j, right in enumerate(heads):
            if i != j and contradicts(evidence, left, right, tokens):
                firing[i] = firing[j] = True
                break
    chosen = sorted(
        index
        for head_fires, indices in zip(firing, by_signature.values(), strict=True)
        if head_fires
        for index in indices
    )
    if len(chosen) < 2:
        return None
    records = [evidence[index] for index in chosen]
    span_ids = set(sids)
    cited: set[str] = set()
    for record in records:
        cited.update(sid for sid in record["source_ids"] if sid in span_ids)
    shared = sorted(cited)
    ids = sorted(record["id"] for record in records)
    agents = {record.get("agent_id") for record in records}
    strong = sum(record["kind"] in STRONG_KINDS for record in records)
    if strong >= 2:
        severity = Severity.HIGH.value
    elif all(record["kind"] in LOW_KINDS for record in records):
        severity = Severity.LOW.value
    else:
        severity = Severity.MEDIUM.value
    claims: dict[str, list[str]] = {}
    for record in records:
        claims.setdefault(record["summary"], []).append(record["id"])
    quoted = []
    for summary, claim_ids in list(claims.items())[:GROUP_SUMMARY_QUOTES]:
        text = summary if len(summary) <= QUOTE_CHARS else summary[: QUOTE_CHARS - 1] + "…"
        who = ", ".join(claim_ids[:2]) + (f" +{len(claim_ids) - 2}" if len(claim_ids) > 2 else "")
        quoted.append(f'"{text}" ({who})')
    more = len(claims) - len(quoted)
    where = shared[0] if len(shared) == 1 else f"{len(shared)} overlapping spans from {shared[0]}"
    summary = (
        f"{len(records)} records from {len(agents)} agent(s) make {len(claims)} conflicting claims on {where}: "
        + " vs ".join(quoted)
        + (f" and {more} more (see members)" if more else "")
    )
    con = {
        "id": f"con:span:{shared[0]}",
        "summary": summary,
        "conflicting_item_ids": ids,
        "severity": severity,
        "source_ids": shared,
    }
    refs = _refs(records, set(shared))
    if refs:
        con["source_refs"] = refs
    con["members"] = [_member(record) for record in records]
    return con


def _member(record: dict) -> dict:
    member = {"id": record["id"], "kind": record["kind"]}
    if record.get("agent_id") is not None:
        member["agent_id"] = record["agent_id"]
    if record.get("lane") is not None:
        member["lane"] = record["lane"]
    member["summary"] = record["summary"]
    return member


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
