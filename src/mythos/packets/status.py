"""`mythos packet status`: a cheap summary of where a run stands, for Prime and for people."""

from __future__ import annotations

import json
from pathlib import Path

from .compiler import packet_state
from .layout import PACKET, QUARANTINE, read_manifest, require_run_dir
from .vocab import FindingStatus


def run_status(run_dir: str | Path) -> dict:
    run = require_run_dir(run_dir)
    manifest = read_manifest(run)
    status = {
        "run_dir": str(run),
        "pass_id": manifest["pass_id"],
        "packet": None,
        "stale": True,
        "packet_state": "missing",
        "evidence": 0,
        "verifier_findings": 0,
        "failing_findings": 0,
        "contradictions": 0,
        "halt": None,
        "quarantined": 0,
    }
    try:
        packet = json.loads((run / PACKET).read_text("utf-8"))
    except (OSError, ValueError):
        packet = None
    if isinstance(packet, dict):
        findings = packet.get("verifier_findings", [])
        state = packet_state(run)
        status.update(
            packet=str(run / PACKET),
            stale=state != "fresh",
            packet_state=state,
            evidence=len(packet.get("evidence", [])),
            verifier_findings=len(findings),
            failing_findings=sum(f.get("status") != FindingStatus.PASSED for f in findings),
            contradictions=len(packet.get("contradictions", [])),
            halt=(packet.get("halt_signals") or [{}])[0].get("kind"),
        )
    quarantine = run / QUARANTINE
    if quarantine.exists():
        status["quarantined"] = sum(
            1 for line in quarantine.read_text("utf-8", "replace").splitlines() if line.strip()
        )
    return status
