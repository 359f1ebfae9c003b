"""The strict gate: may this run halt? Every failure names the check, the record and the fix."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .compiler import is_stale
from .errors import PacketError
from .hashing import fnv1a64
from .layout import PACKET, QUARANTINE, read_manifest, require_run_dir, source_root
from .schema import validate
from .sources import DIRECT_PREFIXES, SourceFiles, parse_span

KNOWN_KINDS = frozenset(
    {
        "objective",
        "subagent-session",
        "codex-synthesis",
        "observation",
        "code-change",
        "test-change",
        "root-cause",
        "blocker",
        "symptom",
        "measurement",
        "failure-mode",
        "gap",
        "missing-check",
        "proposal",
        "risk",
        "architecture",
        "data-loss",
        "code-defect",
        "schema-gap",
        "contract-gap",
        "gate-gap",
        "process-gap",
        "plan",
    }
)
UNTRACED_KINDS = frozenset({"objective", "subagent-session", "codex-synthesis"})
SUMMARY_ONLY_OK = frozenset({"objective", "process", "subagent-session", "codex-synthesis", "blocker"})
STRONG_KINDS = frozenset({"code-change", "root-cause", "test-change"})
DEFAULT_MIN_AGENTS = 3
_MACHINE_PATH = re.compile(r"^(/|~|[A-Za-z]:)|\\")


@dataclass
class GateResult:
    passed: bool
    failures: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    run_dir: str = ""
    pass_id: str | None = None

    def to_json(self) -> dict:
        return {
            "ok": self.passed,
            "passed": self.passed,
            "run_dir": self.run_dir,
            "pass_id": self.pass_id,
            "failures": self.failures,
            "warnings": self.warnings,
        }


def _min_agents(value: int | None) -> int:
    if value is not None:
        if value < 0:
            raise PacketError(
                "min_agents must be >= 0", field="min_agents", value=value, fix="pass 0 or more"
            )
        return value
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

    def fail(self, check: str, record: str | None, message: str, fix: str) -> None:
        self.failures.append({"check": check, "record": record, "message": message, "fix": fix})

    def warn(self, check: str, record: str | None, message: str) -> None:
        self.warnings.append({"check": check, "record": record, "message": message})

    def run_checks(self) -> str | None:
        try:
            manifest = read_manifest(self.run)
        except PacketError as exc:
            self.fail("packet", "manifest.json", exc.message, exc.fix or "restore manifest.json")
            return None
        try:
            packet = json.loads((self.run / PACKET).read_text("utf-8"))
        except FileNotFoundError:
            self.fail("packet", PACKET, "no compiled packet", "run `mythos packet compile --run-dir RUN`")
            return manifest["pass_id"]
        except (ValueError, UnicodeDecodeError) as exc:
            self.fail("packet", PACKET, f"packet is not valid JSON: {exc}", "recompile the run")
            return manifest["pass_id"]
        if is_stale(self.run):
            self.fail(
                "stale",
                PACKET,
                "the run's inputs changed after the packet was compiled",
                "run `mythos packet compile --run-dir RUN` and have Prime read the new packet",
            )
        problems = validate(packet, limit=20)
        for problem in problems:
            self.fail(
                "schema", problem.split(":", 1)[0], problem, "recompile; report a compiler bug if it persists"
            )
        if problems:
            return manifest["pass_id"]
        self._pass(manifest, packet)
        self._integrity(packet)
        self._path_leak(packet)
        self._traceability(packet)
        self._direct_refs(packet)
        self._coverage(packet)
        self._verifier(packet)
        self._halt(packet)
        self._synthesis(packet)
        self._warnings(packet)
        return manifest["pass_id"]

    def _pass(self, manifest: dict, packet: dict) -> None:
        if manifest["pass_id"] != packet["pass_id"]:
            self.fail(
                "pass",
                "manifest.json",
                f"manifest is at {manifest['pass_id']} but the packet is at {packet['pass_id']}",
                "recompile the run",
            )
        if manifest["pass_id"] == "pass-0001":
            self.fail(
                "pass",
                "manifest.json",
                "the run is still at pass-0001: Prime has not recorded a synthesis",
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
                    "integrity",
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
                        "path-leak",
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
            self.fail("integrity", record_id, f"{ref['source_id']}: {exc.message}", exc.fix or fix)
            return
        if actual != ref["hash"]:
            self.fail(
                "integrity",
                record_id,
                f"hash mismatch for {ref['source_id']}: recorded {ref['hash']}, now {actual}",
                fix,
            )
        elif lines is not None and ref.get("span"):
            bounds = parse_span(ref["span"])
            if bounds is None or not 1 <= bounds[0] <= bounds[1] <= lines:
                self.fail(
                    "integrity",
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
                    "path-leak",
                    sid,
                    f"source {sid!r} carries a machine-specific path {path!r}",
                    "cite paths relative to the source root with forward slashes",
                )
            elif "/../" in f"/{path}/" and ref["kind"] == "file":
                self.fail(
                    "path-leak", sid, f"source {sid!r} climbs out with '..'", "cite paths inside the root"
                )
        for record in packet["evidence"]:
            for marker in markers:
                if marker in record["summary"]:
                    self.fail(
                        "path-leak",
                        record["id"],
                        f"summary contains the machine path {marker!r}",
                        "write paths relative to the source root",
                    )
                    break

    def _traceability(self, packet: dict) -> None:
        sessions = [r for r in packet["evidence"] if r["kind"] == "subagent-session"]
        session_ids = {sid for r in sessions for sid in r["source_ids"]}
        if not sessions:
            self.fail(
                "traceability",
                None,
                "no subagent-session evidence: nothing was ingested from a subagent",
                "spawn the lanes and `mythos packet ingest` their output",
            )
        for record in sessions:
            if not record.get("agent_id") or not record.get("lane"):
                self.fail(
                    "traceability",
                    record["id"],
                    "session record lacks agent_id or lane",
                    "ingest with --lane and --agent-id",
                )
        for record in packet["evidence"]:
            if record["kind"] in UNTRACED_KINDS:
                continue
            ids = record["source_ids"]
            if not any(sid.startswith("raw:subagents/") for sid in ids) and not session_ids.intersection(ids):
                self.fail(
                    "traceability",
                    record["id"],
                    "evidence does not trace back to a quarantined subagent "
                    "output (no raw:subagents/* source)",
                    "add records only through `mythos packet ingest`",
                )

    def _direct_refs(self, packet: dict) -> None:
        substantive = [r for r in packet["evidence"] if r["kind"] not in SUMMARY_ONLY_OK]
        summary_only = []
        for record in substantive:
            refs = record.get("source_refs", ())
            if not any(ref["source_id"].startswith(DIRECT_PREFIXES) for ref in refs):
                summary_only.append(record)
            if record["kind"] in STRONG_KINDS and not any(
                ref["kind"] in ("file", "command", "test") for ref in refs
            ):
                self.fail(
                    "direct-ref-ratio",
                    record["id"],
                    f"{record['kind']} evidence needs a file, command or test source_ref",
                    "cite the file:<path>:<line>, command: or test: it rests on",
                )
        if substantive:
            ratio = 1 - len(summary_only) / len(substantive)
            if ratio < self.min_direct_ratio:
                for record in summary_only:
                    self.fail(
                        "direct-ref-ratio",
                        record["id"],
                        f"summary-only evidence (direct-source ratio "
                        f"{ratio:.2f} < {self.min_direct_ratio:.2f})",
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
                "coverage",
                None,
                f"{len(agents)} distinct agent(s) contributed evidence; the gate needs {self.min_agents}",
                f"spawn and ingest at least {self.min_agents} independent lanes "
                "(or lower --min-agents / MYTHOS_MIN_AGENT_COVERAGE)",
            )

    def _verifier(self, packet: dict) -> None:
        if not packet["verifier_findings"]:
            self.fail("verifier", None, "no verifier findings", "have a verifier lane check the work")
        for finding in packet["verifier_findings"]:
            if finding["status"] != "passed":
                self.fail(
                    "verifier",
                    finding["id"],
                    f"verifier finding is {finding['status']}: {finding['summary']}",
                    "fix the issue and ingest a passing finding from a verifier lane",
                )

    def _halt(self, packet: dict) -> None:
        if not any(signal["kind"] == "ready-to-halt" for signal in packet["halt_signals"]):
            self.fail(
                "halt", None, "packet is not ready-to-halt", "resolve the failing findings and recompile"
            )
        for action in packet["candidate_actions"]:
            self.fail(
                "halt",
                action["id"],
                f"candidate action remains: {action['title']}",
                "act on it and ingest the evidence that resolves it",
            )

    def _synthesis(self, packet: dict) -> None:
        if not any(r["kind"] == "codex-synthesis" for r in packet["evidence"]):
            self.fail(
                "synthesis",
                None,
                "Prime's synthesis was not recorded",
                "`mythos packet compile --run-dir RUN --record-synthesis TEXT`",
            )

    def _warnings(self, packet: dict) -> None:
        for record in packet["evidence"]:
            if record["kind"] not in KNOWN_KINDS:
                self.warn("kind", record["id"], f"uses unknown kind {record['kind']!r}")
        for con in packet["contradictions"]:
            if con["id"].startswith("con:auto:"):
                self.warn("contradiction", con["id"], f"[{con['severity']}] {con['summary']}")
        quarantine = self.run / QUARANTINE
        if quarantine.exists():
            count = sum(1 for line in quarantine.read_text("utf-8", "replace").splitlines() if line.strip())
            if count:
                self.warn(
                    "quarantine", QUARANTINE, f"{count} record(s) were rejected at ingest; see {QUARANTINE}"
                )


def gate_run(
    run_dir: str | Path,
    *,
    root: str | Path | None = None,
    min_agents: int | None = None,
    min_direct_ratio: float = 1.0,
) -> GateResult:
    """Run every gate check; ``passed`` is True only when the run may halt."""
    run = require_run_dir(run_dir)
    gate = _Gate(run, root, _min_agents(min_agents), min_direct_ratio)
    pass_id = gate.run_checks()
    return GateResult(
        passed=not gate.failures,
        failures=gate.failures,
        warnings=gate.warnings,
        run_dir=str(run),
        pass_id=pass_id,
    )
