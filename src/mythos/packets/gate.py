"""The strict gate: may this run halt? Every failure names the check, the record and the fix."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .compiler import (
    build,
    digest_text,
    file_sha256,
    packet_dict,
    packet_sha256,
    packet_state,
    recorded_form,
)
from .errors import PacketError
from .hashing import fnv1a64
from .layout import DIGEST, PACKET, QUARANTINE, read_manifest, require_run_dir, source_root
from .schema import validate
from .sources import DIRECT_PREFIXES, SourceFiles, parse_span
from .vocab import (
    ANCHOR_REF_KINDS,
    KNOWN_KINDS,
    STRONG_KINDS,
    SUMMARY_ONLY_OK,
    UNTRACED_KINDS,
    EvidenceKind,
    FindingStatus,
    GateCheck,
    GateWarning,
    HaltKind,
)

DEFAULT_MIN_AGENTS = 3
_MACHINE_PATH = re.compile(r"^(/|~|[A-Za-z]:)|\\")


@dataclass
class GateResult:
    passed: bool
    failures: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    run_dir: str = ""
    pass_id: str | None = None
    packet: dict | None = None  # the packet the gate judged: compiled afresh from the run's inputs

    def to_json(self) -> dict:
        return {
            "ok": self.passed,
            "passed": self.passed,
            "run_dir": self.run_dir,
            "pass_id": self.pass_id,
            "failures": self.failures,
            "warnings": self.warnings,
        }

    def to_reference_json(self) -> dict:
        """The reference strict gate's report shape: ``errors``/``warnings`` are message strings."""
        packet = self.packet or {}
        return {
            "ok": self.passed,
            "run_dir": self.run_dir,
            "pass_id": self.pass_id,
            "packet_pass_id": packet.get("pass_id"),
            "evidence_count": len(packet.get("evidence", ())),
            "verifier_findings": [
                {"id": f["id"], "status": f["status"], "verifier_score": float(f["verifier_score"])}
                for f in packet.get("verifier_findings", ())
            ],
            "halt_kinds": [signal["kind"] for signal in packet.get("halt_signals", ())],
            "candidate_actions": len(packet.get("candidate_actions", ())),
            "errors": [f["message"] for f in self.failures],
            "warnings": [w["message"] for w in self.warnings],
        }


def check_min_agents(value: object) -> int:
    """``--min-agents``: a whole number >= 0 (PacketError naming the flag otherwise)."""
    if type(value) is not int or value < 0:
        raise PacketError(
            f"--min-agents must be a whole number >= 0, got {value!r}",
            field="min_agents",
            value=value,
            fix="pass --min-agents 0 or more (e.g. 3)",
        )
    return value


def check_min_direct_ratio(value: object) -> float:
    """``--min-direct-ratio``: a finite share in [0, 1]; nan would silently disable the check."""
    if type(value) not in (int, float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise PacketError(
            f"--min-direct-ratio must be a number between 0 and 1, got {value!r}",
            field="min_direct_ratio",
            value=value if type(value) is not float or math.isfinite(value) else str(value),
            fix="pass --min-direct-ratio between 0 and 1 (default 1.0)",
        )
    return float(value)


def _min_agents(value: int | None) -> int:
    if value is not None:
        return check_min_agents(value)
    env = os.environ.get("MYTHOS_MIN_AGENT_COVERAGE", "")
    return int(env) if env.isdigit() and int(env) > 0 else DEFAULT_MIN_AGENTS


class _Gate:
    def __init__(self, run: Path, root, min_agents: int, min_direct_ratio: float):
        self.run = run
        self.root = root
        self.min_agents = min_agents
        self.min_direct_ratio = min_direct_ratio
        self.failures: list[dict] = []
        self.warnings: list[dict] = []
        self.packet: dict | None = None

    def fail(self, check: str, record: str | None, message: str, fix: str) -> None:
        self.failures.append({"check": str(check), "record": record, "message": message, "fix": fix})

    def warn(self, check: str, record: str | None, message: str) -> None:
        self.warnings.append({"check": str(check), "record": record, "message": message})

    def run_checks(self) -> str | None:
        """Judge the run's inputs: recompile them in memory, check the packet file is exactly that packet, and
        run every check on the recompiled packet, so a hand-edited packet can neither pass nor hide anything."""
        try:
            manifest = read_manifest(self.run)
        except PacketError as exc:
            self.fail(GateCheck.PACKET, "manifest.json", exc.message, exc.fix or "restore manifest.json")
            return None
        compile_fix = "run `mythos packet compile --run-dir RUN` and have Prime read the new packet"
        on_disk = file_sha256(self.run / PACKET)
        if on_disk is None:
            self.fail(GateCheck.PACKET, PACKET, f"missing next_pass_packet: {PACKET}", compile_fix)
        try:
            compiled, derived = build(self.run, self.root, recorded_form(self.run))
        except PacketError as exc:
            self.fail(
                GateCheck.PACKET,
                exc.field,
                f"the run's inputs do not compile: {exc.message}",
                exc.fix or "fix the input named above, then recompile",
            )
            return manifest["pass_id"]
        packet = self.packet = packet_dict(compiled, derived)
        if on_disk is not None and on_disk != packet_sha256(compiled, derived):
            if packet_state(self.run) == "stale":
                self.fail(
                    GateCheck.STALE,
                    PACKET,
                    "next_pass_packet.json is stale; re-run `mythos packet compile --run-dir RUN` before "
                    "proceeding (the run's inputs changed after the packet was compiled)",
                    compile_fix,
                )
            else:
                self.fail(
                    GateCheck.PACKET,
                    PACKET,
                    "next_pass_packet.json is not the packet the run's inputs compile to now (edited by hand, or a "
                    "cited source file changed since the compile); the gate judged the recompiled packet",
                    compile_fix,
                )
        elif on_disk is not None:
            digest = (self.run / DIGEST).read_bytes() if (self.run / DIGEST).is_file() else None
            if digest != digest_text(compiled, derived).encode("utf-8"):
                self.fail(
                    GateCheck.PACKET,
                    DIGEST,
                    "prime_digest.json is missing or is not the digest of the current packet",
                    compile_fix,
                )
        problems = validate(packet, limit=20)
        for problem in problems:
            self.fail(
                GateCheck.SCHEMA,
                problem.split(":", 1)[0],
                problem,
                "recompile; report a compiler bug if it persists",
            )
        if problems:
            return manifest["pass_id"]
        self._pass(manifest, packet)
        self._integrity(packet)
        self._path_leak(packet)
        self._traceability(packet)
        self._direct_refs(packet)
        self._coverage(packet)
        self._rejected(packet)
        self._verifier(packet)
        self._halt(packet)
        self._synthesis(packet)
        self._warnings(packet)
        return manifest["pass_id"]

    def _pass(self, manifest: dict, packet: dict) -> None:
        if manifest["pass_id"] != packet["pass_id"]:
            self.fail(
                GateCheck.PASS,
                "manifest.json",
                f"manifest pass_id {manifest['pass_id']} does not match packet pass_id {packet['pass_id']}",
                "recompile the run",
            )
        if manifest["pass_id"] == "pass-0001":
            self.fail(
                GateCheck.PASS,
                "manifest.json",
                "run is still pass-0001; strict gate requires at least one promoted recurrence pass",
                "read the packet, then `mythos packet compile --run-dir RUN --record-synthesis TEXT`",
            )

    def _integrity(self, packet: dict) -> None:
        files = SourceFiles(source_root(self.run, self.root))
        for section in ("evidence", "verifier_findings"):
            for record in packet[section]:
                for ref in record.get("source_refs", ()):
                    self._check_ref(files, record["id"], ref)
        for ref in packet["raw_drilldown_refs"]:
            self._check_ref(files, ref["source_id"], ref)
        for con in packet["contradictions"]:
            if con["id"].startswith("con:integrity:"):
                self.fail(
                    GateCheck.INTEGRITY,
                    ", ".join(con["conflicting_item_ids"]),
                    con["summary"],
                    "restore the file, or re-run the lanes that cite it and ingest their new output",
                )

    def _check_ref(self, files: SourceFiles, record_id: str, ref: dict) -> None:
        fix = "restore the cited file, or re-run the lane against the new version and ingest again"
        try:
            if ref["kind"] == "file":
                facts = files.facts(ref["path"])
                actual, lines = facts.hash, facts.lines
            elif ref["kind"] == "raw":
                target = (self.run / ref["path"]).resolve()
                if (self.run / "raw").resolve() not in target.parents:
                    self.fail(
                        GateCheck.PATH_LEAK,
                        record_id,
                        f"raw ref {ref['path']!r} points outside raw/",
                        "cite raw artefacts as raw:<path under raw/>",
                    )
                    return
                if not target.is_file():
                    return  # a raw id that names no file was hashed from its id at ingest
                actual, lines = fnv1a64(target.read_bytes()), None
            else:
                return
        except PacketError as exc:
            self.fail(GateCheck.INTEGRITY, record_id, f"{ref['source_id']}: {exc.message}", exc.fix or fix)
            return
        if actual != ref["hash"]:
            self.fail(
                GateCheck.INTEGRITY,
                record_id,
                f"hash mismatch for {ref['source_id']}: recorded {ref['hash']}, now {actual}",
                fix,
            )
        elif lines is not None and ref.get("span"):
            bounds = parse_span(ref["span"])
            if bounds is None or not 1 <= bounds[0] <= bounds[1] <= lines:
                self.fail(
                    GateCheck.INTEGRITY,
                    record_id,
                    f"span {ref['span']} of {ref['source_id']} is outside 1-{lines}",
                    fix,
                )

    def _path_leak(self, packet: dict) -> None:
        markers = {str(self.run.resolve()), str(source_root(self.run, self.root)), os.path.expanduser("~")}
        markers = {m for m in markers if len(m) > 1}
        for ref in packet["sources"]:
            sid, path = ref["source_id"], ref["path"]
            body = sid.split(":", 1)[1] if ":" in sid else sid
            if _MACHINE_PATH.search(path) or (sid.startswith(DIRECT_PREFIXES) and _MACHINE_PATH.search(body)):
                self.fail(
                    GateCheck.PATH_LEAK,
                    sid,
                    f"source {sid!r} carries a machine-specific path {path!r}",
                    "cite paths relative to the source root with forward slashes",
                )
            elif "/../" in f"/{path}/" and ref["kind"] == "file":
                self.fail(
                    GateCheck.PATH_LEAK,
                    sid,
                    f"source {sid!r} climbs out with '..'",
                    "cite paths inside the root",
                )
        for record in packet["evidence"]:
            for marker in markers:
                if marker in record["summary"]:
                    self.fail(
                        GateCheck.PATH_LEAK,
                        record["id"],
                        f"summary contains the machine path {marker!r}",
                        "write paths relative to the source root",
                    )
                    break

    def _traceability(self, packet: dict) -> None:
        sessions = [r for r in packet["evidence"] if r["kind"] == EvidenceKind.SUBAGENT_SESSION]
        session_ids = {sid for r in sessions for sid in r["source_ids"]}
        if not sessions:
            self.fail(
                GateCheck.TRACEABILITY,
                None,
                "no subagent-session evidence records found; raw subagent output was not ingested mechanically",
                "spawn the lanes and `mythos packet ingest` their output",
            )
        for record in sessions:
            if not record.get("agent_id") or not record.get("lane"):
                self.fail(
                    GateCheck.TRACEABILITY,
                    record["id"],
                    "G2: subagent-session evidence records must carry non-empty agent_id AND lane "
                    f"(offenders: {record['id']})",
                    "ingest with --lane and --agent-id",
                )
        for record in packet["evidence"]:
            if record["kind"] in UNTRACED_KINDS:
                continue
            ids = record["source_ids"]
            if not any(sid.startswith("raw:subagents/") for sid in ids) and not session_ids.intersection(ids):
                self.fail(
                    GateCheck.TRACEABILITY,
                    record["id"],
                    "evidence records lack subagent-session traceability (expected raw:subagents/* or overlap "
                    f"with a subagent-session record): {record['id']}",
                    "add records only through `mythos packet ingest`",
                )

    def _direct_refs(self, packet: dict) -> None:
        substantive = [r for r in packet["evidence"] if r["kind"] not in SUMMARY_ONLY_OK]
        summary_only = []
        for record in substantive:
            refs = record.get("source_refs", ())
            if not any(ref["source_id"].startswith(DIRECT_PREFIXES) for ref in refs):
                summary_only.append(record)
            if record["kind"] in STRONG_KINDS and not any(ref["kind"] in ANCHOR_REF_KINDS for ref in refs):
                self.fail(
                    GateCheck.DIRECT_REF_RATIO,
                    record["id"],
                    "evidence records of kind code-change/root-cause/test-change lack a direct "
                    f"file|command|test source_ref: {record['id']}",
                    "cite the file:<path>:<line>, command: or test: it rests on",
                )
        if substantive:
            ratio = 1 - len(summary_only) / len(substantive)
            if ratio < self.min_direct_ratio:
                for record in summary_only:
                    self.fail(
                        GateCheck.DIRECT_REF_RATIO,
                        record["id"],
                        f"summary-only evidence lacks direct file/command provenance: {record['id']} "
                        f"(direct-source ratio {ratio:.2f} < {self.min_direct_ratio:.2f})",
                        "cite file:<path>:<line>, command:, test: or log: sources for this claim",
                    )

    def _coverage(self, packet: dict) -> None:
        agents = {
            r["agent_id"].strip()
            for r in packet["evidence"]
            if r.get("agent_id", "").strip() and r["kind"] not in UNTRACED_KINDS
        }
        if len(agents) < self.min_agents:
            self.fail(
                GateCheck.COVERAGE,
                None,
                f"agent-id coverage floor not met: saw {len(agents)} distinct agent_id(s) across evidence, "
                f"need at least {self.min_agents} (set MYTHOS_MIN_AGENT_COVERAGE to override)",
                f"spawn and ingest at least {self.min_agents} independent lanes "
                "(or lower --min-agents / MYTHOS_MIN_AGENT_COVERAGE)",
            )

    def _rejected(self, packet: dict) -> None:
        """An ingested output whose every record was refused contributed nothing: Prime would never know."""
        for entry in packet.get("rejected_records", ()):
            if entry["accepted"] == 0 and entry["source_id"].startswith("raw:subagents/"):
                first = entry["reasons"][0]["problem"] if entry["reasons"] else "no reason recorded"
                self.fail(
                    GateCheck.REJECTED,
                    entry["source_id"],
                    f"lane {entry['lane']!r} (agent {entry['agent_id']!r}) contributed nothing: all "
                    f"{entry['rejected']} of its record(s) were rejected at ingest; first: {first}",
                    "fix the records named in the packet's rejected_records (or quarantine/rejected.jsonl) "
                    "and ingest the lane's corrected output",
                )

    def _verifier(self, packet: dict) -> None:
        if not packet["verifier_findings"]:
            self.fail(GateCheck.VERIFIER, None, "no verifier findings", "have a verifier lane check the work")
        for finding in packet["verifier_findings"]:
            if finding["status"] != FindingStatus.PASSED:
                self.fail(
                    GateCheck.VERIFIER,
                    finding["id"],
                    f"non-passing verifier findings remain: {finding['id']} "
                    f"({finding['status']}: {finding['summary']})",
                    "fix the issue and ingest a passing finding from a verifier lane",
                )

    def _halt(self, packet: dict) -> None:
        if not any(signal["kind"] == HaltKind.READY for signal in packet["halt_signals"]):
            self.fail(
                GateCheck.HALT,
                None,
                "packet is not ready-to-halt",
                "resolve the failing findings and recompile",
            )
        for action in packet["candidate_actions"]:
            self.fail(
                GateCheck.HALT,
                action["id"],
                "packet still has candidate_actions; resolve or record them before finalizing: "
                f"{action['title']}",
                "act on it and ingest the evidence that resolves it",
            )

    def _synthesis(self, packet: dict) -> None:
        if not any(r["kind"] == EvidenceKind.CODEX_SYNTHESIS for r in packet["evidence"]):
            self.fail(
                GateCheck.SYNTHESIS,
                None,
                "Codex synthesis was not recorded (Prime's synthesis: "
                "`mythos packet compile --run-dir RUN --record-synthesis TEXT`)",
                "`mythos packet compile --run-dir RUN --record-synthesis TEXT`",
            )

    def _warnings(self, packet: dict) -> None:
        for record in packet["evidence"]:
            if record["kind"] not in KNOWN_KINDS:
                self.warn(
                    GateWarning.KIND,
                    record["id"],
                    f"evidence record {record['id']} uses unknown kind '{record['kind']}' — not rejected, "
                    "but consider adding to the known-kinds set",
                )
        for con in packet["contradictions"]:
            if not con["id"].startswith("con:integrity:"):
                self.warn(GateWarning.CONTRADICTION, con["id"], f"[{con['severity']}] {con['summary']}")
        quarantine = self.run / QUARANTINE
        if quarantine.exists():
            count = sum(1 for line in quarantine.read_text("utf-8", "replace").splitlines() if line.strip())
            if count:
                self.warn(
                    GateWarning.QUARANTINE,
                    QUARANTINE,
                    f"{count} record(s) were rejected at ingest; see {QUARANTINE}",
                )


def gate_run(
    run_dir: str | Path,
    *,
    root: str | Path | None = None,
    min_agents: int | None = None,
    min_direct_ratio: float = 1.0,
) -> GateResult:
    """Run every gate check; ``passed`` is True only when the run may halt."""
    agents = _min_agents(min_agents)
    ratio = check_min_direct_ratio(min_direct_ratio)
    run = require_run_dir(run_dir)
    gate = _Gate(run, root, agents, ratio)
    pass_id = gate.run_checks()
    return GateResult(
        passed=not gate.failures,
        failures=gate.failures,
        warnings=gate.warnings,
        run_dir=str(run),
        pass_id=pass_id,
        packet=gate.packet,
    )
