"""The Prime-facing digest (state/prime_digest.json): a bounded summary of the full packet.

The packet keeps every record (it is the byte-compatible, complete account); at 100k records it is over 100 MB,
which no model can read. The digest is what Prime reads first: counts, what blocks halting, the strongest
contradictions first, what ingest rejected, each list capped, every string clipped, and pointers (ids and the
packet section) to the rest. Its size is bounded by the caps below, whatever the run's size.
"""

from __future__ import annotations

from .vocab import SEVERITY_RANK, EvidenceKind, FindingStatus, Severity

DIGEST_VERSION = 1
MAX_ITEMS = 25  # entries shown per list
MAX_MEMBERS = 8  # member ids shown per contradiction
MAX_REASONS = 3  # rejection reasons shown per ingest
MAX_LANES = 50
MAX_CHARS = 300  # any string longer than this is clipped with "…"
MAX_OBJECTIVE_CHARS = 2000
PACKET_FILE = "state/next_pass_packet.json"


def clip(text: str, limit: int = MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _capped(items: list[dict], section: str, total: int | None = None) -> dict:
    total = len(items) if total is None else total
    return {
        "total": total,
        "shown": items[:MAX_ITEMS],
        "more": max(0, total - MAX_ITEMS),
        "rest_in": f"{PACKET_FILE} {section}",
    }


def _contradiction_rank(con: dict) -> tuple:
    members = con.get("members")
    agents = len({m.get("agent_id") for m in members}) if members else len(con["conflicting_item_ids"])
    return (
        SEVERITY_RANK.get(con["severity"], len(SEVERITY_RANK)),
        -len(con["conflicting_item_ids"]),
        -agents,
        con["id"],
    )


def build_digest(manifest: dict, packet: dict, *, form: str) -> dict:
    """The digest for ``packet`` (the dict compile writes), strongest contradictions first."""
    findings = packet["verifier_findings"]
    by_status: dict[str, int] = {}
    for finding in findings:
        by_status[finding["status"]] = by_status.get(finding["status"], 0) + 1
    failing = [f for f in findings if f["status"] != FindingStatus.PASSED]
    contradictions = packet["contradictions"]
    by_severity = {str(level): 0 for level in Severity}
    for con in contradictions:
        by_severity[con["severity"]] = by_severity.get(con["severity"], 0) + 1
    strongest = sorted(contradictions, key=_contradiction_rank)[:MAX_ITEMS]
    lanes: dict[str, dict] = {}
    agents: set[str] = set()
    for record in packet["evidence"]:
        lane = record.get("lane")
        if lane is None or record["kind"] == EvidenceKind.SUBAGENT_SESSION:
            continue
        entry = lanes.setdefault(lane, {"lane": clip(lane), "agents": set(), "evidence": 0, "rejected": 0})
        entry["evidence"] += 1
        if record.get("agent_id"):
            entry["agents"].add(record["agent_id"])
            agents.add(record["agent_id"])
    rejected = packet.get("rejected_records", [])
    for entry in rejected:
        if entry["lane"]:
            lane = lanes.setdefault(
                entry["lane"], {"lane": clip(entry["lane"]), "agents": set(), "evidence": 0, "rejected": 0}
            )
            lane["rejected"] += entry["rejected"]
    lane_rows = [
        {**row, "agents": sorted(clip(a) for a in row["agents"])[:MAX_MEMBERS]}
        for _, row in sorted(lanes.items())
    ]
    halt = packet["halt_signals"][0]
    return {
        "digest_version": DIGEST_VERSION,
        "about": "Bounded summary of the full packet for Prime. Lists are capped and strings clipped; "
        f"every id shown is in {PACKET_FILE}, where the rest of each list is.",
        "run_id": packet["run_id"],
        "pass_id": packet["pass_id"],
        "objective": clip(packet["objective"], MAX_OBJECTIVE_CHARS),
        "halt": {"kind": halt["kind"], "rationale": clip(halt["rationale"])},
        "counts": {
            "evidence": len(packet["evidence"]),
            "verifier_findings": len(findings),
            "findings_by_status": dict(sorted(by_status.items())),
            "contradictions": len(contradictions),
            "contradiction_form": form,
            "contradictions_by_severity": by_severity,
            "candidate_actions": len(packet["candidate_actions"]),
            "sources": len(packet["sources"]),
            "rejected_records": sum(entry["rejected"] for entry in rejected),
            "lanes": len(lanes),
            "agents": len(agents),
        },
        "failing_findings": _capped(
            [
                {"id": clip(f["id"]), "status": f["status"], "summary": clip(f["summary"])}
                for f in failing[:MAX_ITEMS]
            ],
            "verifier_findings",
            len(failing),
        ),
        "contradictions": _capped(
            [_contradiction(con) for con in strongest], "contradictions", len(contradictions)
        ),
        "candidate_actions": _capped(
            [
                {"id": clip(a["id"]), "title": clip(a["title"])}
                for a in packet["candidate_actions"][:MAX_ITEMS]
            ],
            "candidate_actions",
            len(packet["candidate_actions"]),
        ),
        "rejected_records": _capped(
            [
                {
                    "source_id": clip(entry["source_id"]),
                    "lane": clip(entry["lane"]),
                    "agent_id": clip(entry["agent_id"]),
                    "accepted": entry["accepted"],
                    "rejected": entry["rejected"],
                    "reasons": [clip(reason["problem"]) for reason in entry["reasons"][:MAX_REASONS]],
                }
                for entry in rejected[:MAX_ITEMS]
            ],
            "rejected_records",
            len(rejected),
        ),
        "lanes": {
            "total": len(lane_rows),
            "shown": lane_rows[:MAX_LANES],
            "more": max(0, len(lane_rows) - MAX_LANES),
        },
    }


def _contradiction(con: dict) -> dict:
    ids = con["conflicting_item_ids"]
    members = con.get("members")
    row = {
        "id": clip(con["id"]),
        "severity": con["severity"],
        "members": len(ids),
        "summary": clip(con["summary"]),
        "member_ids": [clip(i) for i in ids[:MAX_MEMBERS]],
        "more_members": max(0, len(ids) - MAX_MEMBERS),
    }
    if members:
        row["agents"] = len({m.get("agent_id") for m in members})
    return row
