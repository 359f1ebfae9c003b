"""The seam between agent mode and the packet compiler (``mythos.packets``).

Each subagent's output is ingested into a packet run directory and compiled; the merge then reads its
findings from the compiled packet, not from the subagents' raw prose. When the packet wing is not
importable (or packets are switched off) the findings go to the merge straight from the run record and the
record says so.
"""

from __future__ import annotations

from typing import Any

from mythos.reason.record import SubagentRecord


def _direct_findings(subs: list[SubagentRecord]) -> list[dict[str, Any]]:
    return [
        {
            "letter": s.letter,
            "lens": s.lens_id,
            "finding": s.finding,
            "confidence": s.confidence,
            "tension_flag": s.tension_flag,
            "low_confidence": s.low_confidence,
        }
        for s in subs
        if s.finding and s.status in ("ok", "recovered")
    ]


def compile_findings(
    subs: list[SubagentRecord], *, question: str, packets: bool, packets_dir: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (findings for the merge prompt, packet info for the run record)."""
    if not packets:
        return _direct_findings(subs), {"used": False, "reason": "packets switched off in the config"}
    try:
        from mythos.reason import packet_ingest
    except ImportError as exc:
        return _direct_findings(subs), {"used": False, "reason": f"packet compiler unavailable: {exc}"}
    try:
        return packet_ingest.through_packet(question, packets_dir, subs)
    except packet_ingest.PacketUnavailable as exc:
        return _direct_findings(subs), {"used": False, "reason": str(exc)}
    except Exception as exc:  # a bug in another wing must not cost the user the answer
        return _direct_findings(subs), {
            "used": False,
            "reason": f"packet path crashed: {type(exc).__name__}: {exc}",
        }
