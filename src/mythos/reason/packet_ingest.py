"""Agent findings through the packet compiler: ingest each subagent's output, compile, read the packet back.

Each subagent's output becomes a quarantined raw file with one fenced ``mythos-evidence-jsonl`` record (its
finding; a second ``risk`` record for its tension flag), or a ``BLOCKED`` line when it failed. The merge then
reads the findings from the compiled ``state/next_pass_packet.json`` — hashed, attributed, schema-checked —
instead of the subagents' prose.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mythos.packets import PacketError, compile_run, ingest_text, init_run, record_synthesis
from mythos.reason.record import SubagentRecord

CONFIDENCE = {"high": 0.9, "medium": 0.6, "low": 0.3, "n/a": 0.5}


class PacketUnavailable(Exception):
    """The packet path failed; the message says why (the engine then merges from the run record)."""


def _lane(sub: SubagentRecord) -> str:
    return f"{sub.letter}-{sub.lens_id}"


def subagent_output(sub: SubagentRecord) -> str:
    """The text a subagent hands in: its finding as prose plus the machine-readable fenced records."""
    if sub.status not in ("ok", "recovered", "no_insight") or not sub.finding:
        return f"Subagent {sub.letter} ({sub.lens_id}) produced no usable finding.\nBLOCKED {sub.error or 'failed'}\n"
    records = [
        {
            "id": f"ev-sub-{sub.letter.lower()}",
            "kind": "observation",
            "summary": sub.finding,
            "source_ids": ["raw:objective.md"],
            "confidence": CONFIDENCE.get(sub.confidence, 0.5),
            "rationale": sub.reasoning or sub.finding,
        }
    ]
    if sub.tension_flag:
        records.append(
            {
                "id": f"ev-sub-{sub.letter.lower()}-tension",
                "kind": "risk",
                "summary": sub.tension_flag,
                "source_ids": ["raw:objective.md"],
            }
        )
    lines = "\n".join(json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records)
    return (
        f"Subagent {sub.letter} — {sub.lens_id}\n\n{sub.reasoning}\n\n"
        f"```mythos-evidence-jsonl\n{lines}\n```\n"
    )


def _label(confidence: float | None) -> str:
    if confidence is None:
        return "medium"
    return "high" if confidence >= 0.8 else "low" if confidence <= 0.35 else "medium"


def through_packet(
    question: str, packets_dir: str | None, subs: list[SubagentRecord]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Ingest, compile, read back. ``packets_dir``: where run directories go (None: the system temp dir)."""
    base = Path(packets_dir) if packets_dir else None
    try:
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="mythos-packet-", dir=base))
        run_dir = root / "run"
        init_run(run_dir, task=question, root=root)
        ingested = {}
        for sub in subs:
            result = ingest_text(
                run_dir,
                lane=_lane(sub),
                agent_id=f"subagent-{sub.letter}",
                text=subagent_output(sub),
                root=root,
            )
            ingested[sub.letter] = result
            ids = [i for i in result.evidence_ids if i.startswith("ev-sub-")]
            sub.packet_evidence_id = ids[0] if ids else None
        packet = compile_run(run_dir, root=root)
    except (PacketError, OSError, ValueError) as exc:
        raise PacketUnavailable(f"packet compiler failed: {exc}") from exc
    by_lane: dict[str, dict[str, Any]] = {}
    for ev in packet.get("evidence", []):
        lane = ev.get("lane")
        if not lane or not str(ev.get("id", "")).startswith("ev-sub-"):
            continue
        entry = by_lane.setdefault(lane, {})
        if ev.get("kind") == "observation":
            entry["finding"], entry["confidence"] = ev["summary"], ev.get("confidence")
            entry["evidence_id"] = ev["id"]
        elif ev.get("kind") == "risk":
            entry["tension_flag"] = ev["summary"]
    findings = []
    for sub in subs:
        entry = by_lane.get(_lane(sub))
        if not entry or "finding" not in entry or sub.status not in ("ok", "recovered"):
            continue
        findings.append(
            {
                "letter": sub.letter,
                "lens": sub.lens_id,
                "finding": entry["finding"],
                "confidence": _label(entry.get("confidence")),
                "tension_flag": entry.get("tension_flag"),
                "low_confidence": (entry.get("confidence") or 1.0) <= 0.35,
                "evidence_id": entry["evidence_id"],
            }
        )
    info = {
        "used": True,
        "run_dir": str(run_dir),
        "root": str(root),
        "packet": str(run_dir / "state" / "next_pass_packet.json"),
        "pass_id": packet.get("pass_id"),
        "evidence_ids": [f["evidence_id"] for f in findings],
        "blocked": [s.letter for s in subs if ingested[s.letter].blocked],
        "contradictions": len(packet.get("contradictions") or []),
    }
    return findings, info


def record_merge(run_dir: str, root: str, synthesis: str) -> str | None:
    """Record the merge's synthesis as Prime's synthesis and recompile; returns the new pass id."""
    try:
        return record_synthesis(run_dir, synthesis, root=root).get("pass_id")
    except (PacketError, OSError, ValueError):
        return None
