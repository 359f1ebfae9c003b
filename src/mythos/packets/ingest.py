"""Ingest a subagent's raw output: quarantine it, extract fenced records, validate, attribute, hash, append.

Concurrency: every ingest takes the run's exclusive ``flock`` for its read-check-append step, so parallel ingests
from separate processes serialise; each one writes its raw copy, evidence lines and finding lines as whole lines
with ``O_APPEND`` + fsync. We chose one lock over per-ingest files merged later because the JSONL files stay the
single, simple input format the reference and the compiler share, and duplicate-id checks need a serial point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mythos.fsutil import atomic_write
from mythos.fsutil import slug as _fs_slug

from .appendlog import append_lines, compact, heal_torn_tail, scan_ids
from .errors import PacketError
from .hashing import fnv1a64, fnv1a64_text, is_hex16
from .layout import (
    EVIDENCE,
    FINDINGS,
    QUARANTINE,
    SUBAGENTS,
    require_run_dir,
    run_lock,
    source_root,
)
from .records import loads_strict, parse_evidence, parse_finding
from .sources import HASH_ALG, SourceFiles, is_direct, parse_file_id
from .vocab import FINDING_STATUSES, REF_KINDS, EvidenceKind, FindingStatus

MAX_INPUT_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
_FENCE = re.compile(r"^```([^`\n]*)\n(.*?)^```(?=\r?\n|\Z)", re.MULTILINE | re.DOTALL)
_BLOCKED = re.compile(r"^[ \t]*BLOCKED[ \t]+(\S.*)$", re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")


@dataclass
class IngestResult:
    added: int = 0
    evidence_ids: list[str] = field(default_factory=list)
    finding_ids: list[str] = field(default_factory=list)
    blocked: str | None = None
    quarantined: list[dict] = field(default_factory=list)
    raw_source_id: str = ""
    raw_path: str = ""

    def to_json(self) -> dict:
        return {
            "ok": True,
            "added": self.added,
            "evidence_ids": self.evidence_ids,
            "finding_ids": self.finding_ids,
            "blocked": self.blocked,
            "quarantined": self.quarantined,
            "raw_source_id": self.raw_source_id,
            "raw_path": self.raw_path,
        }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slug(text: str, limit: int = 64) -> str:
    """The house slug rule (``mythos.fsutil.slug``) with this module's fallback name."""
    return _fs_slug(text, limit, default="subagent")


def extract_blocks(text: str) -> list[tuple[str, int, str]]:
    """(kind, block number, body) for each evidence/verifier fence, in document order."""
    blocks: list[tuple[str, int, str]] = []
    for number, match in enumerate(_FENCE.finditer(text), start=1):
        header = match.group(1).strip().lower()
        kinds: list[str] = []
        if header == "mythos-evidence-jsonl":
            kinds = ["evidence"]
        elif header == "mythos-verifier-jsonl":
            kinds = ["verifier"]
        elif header == "jsonl" or " jsonl" in header:
            before = text[max(0, match.start() - 240) : match.start()].lower()
            if "mythos-evidence-jsonl" in before or "suggested evidence" in before:
                kinds.append("evidence")
            if "mythos-verifier-jsonl" in before or "suggested verifier" in before:
                kinds.append("verifier")
        blocks.extend((kind, number, match.group(2)) for kind in kinds)
    return blocks


def _check_name(value: str, flag: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise PacketError(
            f"{flag} {value!r} is not a usable name",
            field=flag.lstrip("-"),
            value=value,
            fix="use 1-128 characters from letters, digits and . _ : @ / + - (starting alphanumeric)",
        )
    return value


def _check_time(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PacketError(
            f"{where}: observed_at must be an ISO-8601 string",
            field="observed_at",
            value=value,
            fix="write it like 2026-04-21T00:00:00Z or leave it out",
        )
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise PacketError(
            f"{where}: observed_at {value!r} is not an ISO-8601 timestamp",
            field="observed_at",
            value=value,
            fix="write it like 2026-04-21T00:00:00Z or leave it out",
        ) from None
    return value


class _Normaliser:
    """Turns one agent-written record into the exact dict we append (or raises PacketError naming the problem)."""

    def __init__(self, run_dir: Path, files: SourceFiles, lane: str, agent_id: str, observed_at: str):
        self.run_dir = run_dir.resolve()
        self.files = files
        self.lane = lane
        self.agent_id = agent_id
        self.observed_at = observed_at

    def _ref(self, ref: object, record_time: str, where: str) -> dict:
        if not isinstance(ref, dict):
            raise PacketError(
                f"{where}: source_ref must be an object",
                field="source_refs",
                value=ref,
                fix='write each source_ref as {"source_id": ..., "kind": ...}',
            )
        ref = dict(ref)
        source_id = ref.get("source_id")
        if not isinstance(source_id, str) or not source_id:
            raise PacketError(
                f"{where}: source_ref has no source_id",
                field="source_id",
                value=source_id,
                fix="give every source_ref a source_id string",
            )
        kind = ref.get("kind")
        if kind is None and ":" in source_id:
            kind = source_id.split(":", 1)[0]
        if kind not in REF_KINDS:
            raise PacketError(
                f"{where}: source_ref {source_id!r} has kind {kind!r}",
                field="kind",
                value=kind,
                fix=f"use one of {', '.join(REF_KINDS)}",
            )
        if ref.get("hash_alg") not in (None, HASH_ALG):
            raise PacketError(
                f"{where}: source_ref {source_id!r} uses hash_alg {ref['hash_alg']!r}",
                field="hash_alg",
                value=ref["hash_alg"],
                fix=f"use {HASH_ALG!r} or leave it out",
            )
        observed = (
            _check_time(ref["observed_at"], where) if ref.get("observed_at") is not None else record_time
        )
        span = ref.get("span")
        if span is not None and not isinstance(span, str):
            raise PacketError(
                f'{where}: span must be a string like "12" or "10-14"',
                field="span",
                value=span,
                fix="quote the line range",
            )
        path = ref.get("path")
        if kind == "file":
            if path is None:
                parsed = parse_file_id(source_id)
                if parsed is None:
                    raise PacketError(
                        f"{where}: file ref {source_id!r} has no path",
                        field="path",
                        value=source_id,
                        fix='add "path" or use the id form file:<path>:<line>',
                    )
                path = parsed[0]
                span = span if span is not None else parsed[1]
            if not isinstance(path, str):
                raise PacketError(
                    f"{where}: path must be a string", field="path", value=path, fix="quote the path"
                )
            facts = self.files.facts(path, field="path")
            self.files.check_span(path, span, field="span")
            digest = facts.hash  # always from disk: the agent's claim is never trusted
        elif kind == "raw":
            rest = source_id.split(":", 1)[1] if source_id.startswith("raw:") else source_id
            path = path if isinstance(path, str) else f"raw/{rest}"
            target = (self.run_dir / path).resolve()
            raw_root = (self.run_dir / "raw").resolve()
            if raw_root not in target.parents:
                raise PacketError(
                    f"{where}: raw ref path {path!r} is outside the run's raw/",
                    field="path",
                    value=path,
                    fix="cite files under raw/ as raw:<path under raw/>",
                )
            digest = (
                fnv1a64(target.read_bytes())
                if target.is_file()
                else (ref["hash"] if is_hex16(ref.get("hash")) else fnv1a64_text(source_id))
            )
        else:
            if path is None:
                path = source_id.split(":", 1)[1] if ":" in source_id else source_id
            if not isinstance(path, str) or not path:
                raise PacketError(
                    f"{where}: path must be a non-empty string",
                    field="path",
                    value=path,
                    fix="give the ref a path or leave it out",
                )
            digest = ref["hash"] if is_hex16(ref.get("hash")) else fnv1a64_text(source_id)
        extra = set(ref) - {"source_id", "path", "kind", "hash", "hash_alg", "span", "observed_at"}
        if extra:
            name = sorted(extra)[0]
            raise PacketError(
                f"{where}: source_ref {source_id!r} has unknown field {name!r}",
                field=name,
                value=name,
                fix="remove it; allowed: source_id, path, kind, hash, hash_alg, span, observed_at",
            )
        return {
            "source_id": source_id,
            "path": path,
            "kind": kind,
            "hash": digest,
            "hash_alg": HASH_ALG,
            "span": span,
            "observed_at": observed,
        }

    def _relative_file_id(self, sid: str) -> str:
        """``file:/abs/root/src/a.py:3`` → ``file:src/a.py:3`` when the path is inside the source root."""
        parsed = parse_file_id(sid) if sid.startswith("file:/") else None
        rel = self.files.root_relative(parsed[0]) if parsed else None
        return f"file:{rel}:{parsed[1]}" if rel and parsed else sid

    def _relative_ref(self, ref: object) -> object:
        if not isinstance(ref, dict):
            return ref
        ref = dict(ref)
        if isinstance(ref.get("source_id"), str):
            ref["source_id"] = self._relative_file_id(ref["source_id"])
        sid = ref.get("source_id")
        kind = ref.get("kind") or (sid.split(":", 1)[0] if isinstance(sid, str) else None)
        if kind == "file" and isinstance(ref.get("path"), str):
            ref["path"] = self.files.root_relative(ref["path"]) or ref["path"]
        return ref

    def _sources(self, record: dict, where: str) -> None:
        ids = record.get("source_ids", [])
        if not isinstance(ids, list) or any(not isinstance(sid, str) or not sid for sid in ids):
            raise PacketError(
                f"{where}: source_ids must be a list of non-empty strings",
                field="source_ids",
                value=ids,
                fix='write source_ids as ["file:src/app.py:12", ...]',
            )
        refs_in = record.get("source_refs", [])
        if refs_in is None:
            refs_in = []
        if not isinstance(refs_in, list):
            raise PacketError(
                f"{where}: source_refs must be a list",
                field="source_refs",
                value=refs_in,
                fix="write source_refs as [{...}] or leave it out",
            )
        record_time = record["observed_at"]
        ids = [self._relative_file_id(sid) for sid in ids]
        refs_in = [self._relative_ref(ref) for ref in refs_in]
        refs = [self._ref(ref, record_time, f"{where} source_refs[{n}]") for n, ref in enumerate(refs_in)]
        declared = {ref["source_id"] for ref in refs}
        for sid in ids:
            if not is_direct(sid) or sid in declared:
                continue
            if sid.startswith("file:"):
                if parse_file_id(sid) is None:
                    raise PacketError(
                        f"{where}: file source id {sid!r} has no line",
                        field="source_ids",
                        value=sid,
                        fix="write it as file:<path>:<line> or file:<path>:<a>-<b>",
                    )
                synthesised = {"source_id": sid, "kind": "file"}
            else:
                synthesised = {"source_id": sid, "kind": sid.split(":", 1)[0]}
            refs.append(self._ref(synthesised, record_time, f"{where} source_id {sid!r}"))
            declared.add(sid)
        record["source_ids"] = list(dict.fromkeys([*ids, *(ref["source_id"] for ref in refs)]))
        if refs:
            record["source_refs"] = refs
        else:
            record.pop("source_refs", None)

    def _common(self, obj: object, where: str, what: str) -> dict:
        if not isinstance(obj, dict):
            raise PacketError(
                f"{where}: a {what} must be a JSON object, got {type(obj).__name__}",
                field=what,
                value=obj,
                fix=f"write each {what} as one JSON object per line",
            )
        record = dict(obj)
        if not isinstance(record.get("id"), str) or not record["id"].strip():
            raise PacketError(
                f"{where}: missing required field 'id'",
                field="id",
                value=record.get("id"),
                fix="give the record a non-empty string id",
            )
        record["observed_at"] = (
            _check_time(record["observed_at"], where)
            if record.get("observed_at") is not None
            else self.observed_at
        )
        for name, value in (("agent_id", self.agent_id), ("lane", self.lane)):
            supplied = record.get(name)
            if supplied in (None, ""):
                record[name] = value
            elif supplied != value:
                # The orchestrator's flags are authoritative: a subagent claiming other agents' ids could pass
                # the coverage gate alone (the reference kept whatever the subagent wrote).
                flag = "--agent-id" if name == "agent_id" else "--lane"
                raise PacketError(
                    f"{where}: {name} {supplied!r} differs from this ingest's {flag} {value!r}",
                    field=name,
                    value=supplied,
                    fix=f"leave {name} out; ingest stamps it",
                )
        return record

    def evidence(self, obj: object, where: str) -> dict:
        record = self._common(obj, where, "evidence record")
        confidence = record.get("confidence")
        if confidence is not None and (type(confidence) not in (int, float) or not 0.0 <= confidence <= 1.0):
            raise PacketError(
                f"{where}: confidence must be a number between 0 and 1",
                field="confidence",
                value=confidence,
                fix="write confidence in [0, 1] or leave it out",
            )
        self._sources(record, where)
        parsed = parse_evidence(record, where)
        if not parsed["source_ids"]:
            raise PacketError(
                f"{where}: evidence cites no source",
                field="source_ids",
                value=[],
                fix="cite file:<path>:<line>, command:, test: or log: ids",
            )
        return parsed

    def finding(self, obj: object, where: str) -> dict:
        record = self._common(obj, where, "verifier finding")
        status = record.setdefault("status", FindingStatus.PENDING.value)
        if status not in FINDING_STATUSES:
            raise PacketError(
                f"{where}: status {status!r} is not a verifier status",
                field="status",
                value=status,
                fix=f"use one of {', '.join(FINDING_STATUSES)}",
            )
        score = record.setdefault("verifier_score", 0.0)
        if type(score) not in (int, float) or not 0.0 <= score <= 1.0:
            raise PacketError(
                f"{where}: verifier_score must be a number between 0 and 1",
                field="verifier_score",
                value=score,
                fix="write verifier_score in [0, 1]",
            )
        reason = record.get("closure_reason")
        if reason is not None:
            if not isinstance(reason, str):
                raise PacketError(
                    f"{where}: closure_reason must be a string",
                    field="closure_reason",
                    value=reason,
                    fix="write closure_reason as text or leave it out",
                )
            if reason.strip():
                record["closure_reason"] = reason.strip()
            else:
                del record["closure_reason"]
        self._sources(record, where)
        parsed = parse_finding(record, where)
        parsed["verifier_score"] = float(parsed["verifier_score"])
        parsed["observed_at"] = record["observed_at"]
        return parsed


def ingest_file(
    run_dir: str | Path, *, lane: str, agent_id: str, path: str | Path, root: str | Path | None = None
) -> IngestResult:
    """Ingest a subagent output file (see ``ingest_text``). Missing, unreadable, binary or huge files are refused."""
    source = Path(path)
    try:
        if source.is_dir():
            raise PacketError(
                f"--from {str(source)!r} is a directory",
                field="from",
                value=str(source),
                fix="pass the subagent's output file, not its directory",
            )
        if source.exists() and not source.is_file():
            raise PacketError(
                f"--from {str(source)!r} is not a regular file (FIFO, socket or device)",
                field="from",
                value=str(source),
                fix="save the subagent output to a regular file",
            )
        with open(source, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise PacketError(
            f"--from {str(source)!r} does not exist",
            field="from",
            value=str(source),
            fix="pass the path of the subagent's output file",
        ) from None
    except PermissionError:
        raise PacketError(
            f"--from {str(source)!r} is not readable",
            field="from",
            value=str(source),
            fix="make the file readable",
        ) from None
    except OSError as exc:
        raise PacketError(
            f"--from {str(source)!r} cannot be read: {exc.strerror}",
            field="from",
            value=str(source),
            fix="pass a regular, readable file",
        ) from None
    if len(data) > MAX_INPUT_BYTES:
        raise PacketError(
            f"--from {str(source)!r} is over {MAX_INPUT_BYTES} bytes",
            field="from",
            value=str(source),
            fix="split the subagent output into smaller files",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PacketError(
            f"--from {str(source)!r} is not UTF-8 (invalid byte at offset {exc.start})",
            field="from",
            value=str(source),
            fix="re-encode the subagent output as UTF-8",
        ) from None
    run = require_run_dir(run_dir)
    in_place = None
    resolved = source.resolve()
    subagents = (run / SUBAGENTS).resolve()
    if subagents in resolved.parents:
        in_place = resolved.relative_to(subagents).as_posix()
    return _ingest(run, lane=lane, agent_id=agent_id, text=text, root=root, in_place=in_place)


def ingest_text(
    run_dir: str | Path, *, lane: str, agent_id: str, text: str, root: str | Path | None = None
) -> IngestResult:
    """Ingest a subagent's output given as text; the text is quarantined under raw/subagents/ first."""
    run = require_run_dir(run_dir)
    if not isinstance(text, str):
        raise PacketError(
            "text must be a str", field="text", value=type(text).__name__, fix="pass the output text"
        )
    if len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise PacketError(
            f"subagent output is over {MAX_INPUT_BYTES} bytes", field="text", fix="split the subagent output"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PacketError(
            "subagent output contains lone surrogates (not encodable as UTF-8)",
            field="text",
            fix="pass valid Unicode text",
        ) from None
    return _ingest(run, lane=lane, agent_id=agent_id, text=text, root=root, in_place=None)


def _ingest(run: Path, *, lane: str, agent_id: str, text: str, root, in_place: str | None) -> IngestResult:
    _check_name(lane, "--lane")
    _check_name(agent_id, "--agent-id")
    if not text.strip():
        raise PacketError("subagent output is empty", field="text", fix="ingest the subagent's actual output")
    blocks = extract_blocks(text)
    blocked_match = _BLOCKED.search(text)
    blocked = blocked_match.group(1).strip() if blocked_match else None
    if not blocks and blocked is None:
        raise PacketError(
            "no mythos-evidence-jsonl or mythos-verifier-jsonl block was found, and no BLOCKED line",
            field="text",
            fix="have the subagent write its records in ```mythos-evidence-jsonl fences "
            "(prose outside fences never reaches the packet)",
        )
    observed_at = now_iso()
    norm = _Normaliser(run, SourceFiles(source_root(run, root)), lane, agent_id, observed_at)
    evidence: list[dict] = []
    findings: list[dict] = []
    problems: list[dict] = []
    origins: dict[int, dict] = {}
    for kind, block, body in blocks:
        line_no = 0
        for line in body.strip().splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            line_no += 1
            where = f"{kind} block {block} line {line_no}"
            try:
                if len(stripped.encode("utf-8")) > MAX_LINE_BYTES:
                    raise PacketError(
                        f"{where}: line is over {MAX_LINE_BYTES} bytes",
                        field="line",
                        fix="keep each record under 1 MiB; cite files instead of pasting them",
                    )
                try:
                    obj = loads_strict(stripped)
                except (ValueError, RecursionError) as exc:
                    raise PacketError(
                        f"{where}: not valid JSON ({exc})",
                        field="line",
                        fix="write exactly one complete JSON object per line",
                    ) from None
                parsed = norm.evidence(obj, where) if kind == "evidence" else norm.finding(obj, where)
                (evidence if kind == "evidence" else findings).append(parsed)
                origins[id(parsed)] = {"block": block, "line": line_no}
            except PacketError as exc:
                problems.append(
                    {
                        "block": block,
                        "kind": kind,
                        "line": line_no,
                        "problem": exc.message,
                        "field": exc.field,
                        "fix": exc.fix,
                        "text": stripped[:2000],
                    }
                )
    return _commit(
        run, lane, agent_id, text, observed_at, in_place, evidence, findings, problems, blocked, origins
    )


def _commit(
    run: Path,
    lane: str,
    agent_id: str,
    text: str,
    observed_at: str,
    in_place: str | None,
    evidence: list[dict],
    findings: list[dict],
    problems: list[dict],
    blocked: str | None,
    origins: dict[int, dict],
) -> IngestResult:
    result = IngestResult(blocked=blocked)
    with run_lock(run):
        for rel in (EVIDENCE, FINDINGS, QUARANTINE):
            if (run / rel).is_symlink():
                raise PacketError(
                    f"{rel} is a symbolic link; run inputs must be the files themselves",
                    field=rel,
                    fix=f"replace {rel} with a copy of the file it points to",
                )
        evidence_ids, sessions = scan_ids(run / EVIDENCE)
        number = len(sessions) + 1
        if in_place is not None:
            raw_rel = in_place
        else:
            raw_rel = f"{number:04d}-{slug(lane, 40)}-{slug(agent_id, 40)}.md"
            while (run / SUBAGENTS / raw_rel).exists():
                number += 1
                raw_rel = f"{number:04d}-{slug(lane, 40)}-{slug(agent_id, 40)}.md"
        raw_id = f"raw:subagents/{raw_rel}"
        for session in sessions:
            if raw_id in (session.get("source_ids") or []):
                raise PacketError(
                    f"duplicate ingest: {raw_id} was already ingested by {session.get('id')!r}",
                    field="from",
                    value=raw_id,
                    fix="ingest each subagent output once",
                )
        raw_path = run / SUBAGENTS / raw_rel
        if in_place is None:
            header = f"# Subagent Session {number:04d}\n\nlane: {lane}\nagent_id: {agent_id}\n\n"
            atomic_write(raw_path, header + text.strip() + "\n")
        try:  # until the session record is appended, nothing cites the raw copy: never leave it orphaned
            raw_bytes = raw_path.read_bytes()
            session_id = f"ev-subagent-session-{number:04d}-{slug(lane, 40)}"
            accepted_evidence = [
                {
                    "id": session_id,
                    "kind": EvidenceKind.SUBAGENT_SESSION.value,
                    "summary": f"Captured quarantined subagent output for lane {lane}; machine records were extracted "
                    "without Prime synthesis.",
                    "source_ids": [raw_id],
                    "source_refs": [
                        {
                            "source_id": raw_id,
                            "path": f"raw/subagents/{raw_rel}",
                            "kind": "raw",
                            "hash": fnv1a64(raw_bytes),
                            "hash_alg": HASH_ALG,
                            "span": None,
                            "observed_at": observed_at,
                        }
                    ],
                    "observed_at": observed_at,
                    "agent_id": agent_id,
                    "lane": lane,
                }
            ]
            if session_id in evidence_ids:
                raise PacketError(
                    f"session id {session_id} already exists",
                    field="id",
                    value=session_id,
                    fix="check evidence.jsonl for hand-made session records",
                )
            accepted_evidence += _first_of_each_id(
                evidence,
                set(evidence_ids) | {session_id},
                raw_id,
                problems,
                origins,
                kind="evidence",
                clash="",
                fix="give every record a run-unique id",
            )
            if blocked is not None:
                blocker_id = f"ev-blocker-{number:04d}-{slug(lane, 40)}"
                accepted_evidence.append(
                    {
                        "id": blocker_id,
                        "kind": EvidenceKind.BLOCKER.value,
                        "summary": f"BLOCKED: {blocked}",
                        "source_ids": [raw_id],
                        "observed_at": observed_at,
                        "agent_id": agent_id,
                        "lane": lane,
                    }
                )
            # a finding id reported in an earlier ingest is a status update, not a clash: start from no ids
            accepted_findings = _first_of_each_id(
                findings,
                set(),
                raw_id,
                problems,
                origins,
                kind="verifier",
                clash=" in one output",
                fix="report each finding once per output",
            )
            finding_ids, _ = scan_ids(run / FINDINGS)
            accepted_evidence, accepted_findings = _drop_dangling_citations(
                run, accepted_evidence, accepted_findings, evidence_ids, finding_ids, problems, origins
            )
            quarantine_lines = []
            for rel in (EVIDENCE, FINDINGS):
                torn = heal_torn_tail(run / rel)
                if torn is not None:
                    quarantine_lines.append(
                        compact(
                            {
                                "ingest": raw_id,
                                "file": rel,
                                "problem": "torn last line (a write was cut off); removed from the file",
                                "text": torn[:2000],
                            }
                        )
                    )
            append_lines(run / EVIDENCE, [compact(r) for r in accepted_evidence])
        except BaseException:
            if in_place is None:
                raw_path.unlink(missing_ok=True)
            raise
        append_lines(run / FINDINGS, [compact(r) for r in accepted_findings])
        for problem in problems:
            quarantine_lines.append(
                compact({"ingest": raw_id, "lane": lane, "agent_id": agent_id, **problem})
            )
        append_lines(run / QUARANTINE, quarantine_lines)
    result.evidence_ids = [r["id"] for r in accepted_evidence]
    result.finding_ids = [r["id"] for r in accepted_findings]
    result.added = len(accepted_evidence) + len(accepted_findings)
    result.quarantined = problems
    result.raw_source_id = raw_id
    result.raw_path = f"raw/subagents/{raw_rel}"
    return result


def _drop_dangling_citations(
    run: Path,
    evidence: list[dict],
    findings: list[dict],
    old_evidence: set[str],
    old_findings: set[str],
    problems: list[dict],
    origins: dict[int, dict],
) -> tuple[list[dict], list[dict]]:
    """Quarantine records citing ids that will not exist at compile time (the reference appended them and every
    later compile failed). Repeats until stable, since dropping a record can orphan a citation of it."""
    raw_root = (run / "raw").resolve()

    def raw_exists(rest: str) -> bool:
        target = (raw_root / rest).resolve()
        return raw_root in target.parents and target.is_file()

    while True:
        known_evidence = old_evidence | {r["id"] for r in evidence}
        known_findings = old_findings | {r["id"] for r in findings}
        dropped = False
        kept: list[list[dict]] = [[], []]
        for slot, (records, kind) in enumerate(((evidence, "evidence"), (findings, "verifier"))):
            for record in records:
                declared = {ref["source_id"] for ref in record.get("source_refs", ())}
                bad = next(
                    (
                        sid
                        for sid in record["source_ids"]
                        if sid not in declared
                        and not (
                            (sid.startswith("raw:") and raw_exists(sid[4:]))
                            or (sid.startswith("evidence:") and sid[9:] in known_evidence)
                            or (sid.startswith("verifier:") and sid[9:] in known_findings)
                        )
                    ),
                    None,
                )
                if bad is None:
                    kept[slot].append(record)
                    continue
                dropped = True
                problems.append(
                    {
                        "kind": kind,
                        **origins.get(id(record), {}),
                        "problem": f"record {record['id']!r} cites unknown source id {bad!r}",
                        "field": "source_ids",
                        "text": record["id"],
                        "fix": "cite file:/command:/test:/log: ids, or raw:/evidence:/verifier: ids that "
                        "exist in the run",
                    }
                )
        evidence, findings = kept
        if not dropped:
            return evidence, findings


def _first_of_each_id(
    records: list[dict],
    taken: set[str],
    raw_id: str,
    problems: list[dict],
    origins: dict[int, dict],
    *,
    kind: str,
    clash: str,
    fix: str,
) -> list[dict]:
    """Records whose id is not in ``taken`` (nor repeated), each citing the raw output first; the rest are
    reported in ``problems`` as duplicate ids."""
    accepted = []
    for record in records:
        if record["id"] in taken:
            problems.append(
                {
                    "kind": kind,
                    **origins.get(id(record), {}),
                    "problem": f"duplicate id {record['id']!r}{clash}",
                    "field": "id",
                    "fix": fix,
                    "text": record["id"],
                }
            )
            continue
        taken.add(record["id"])
        if raw_id not in record["source_ids"]:
            record["source_ids"].insert(0, raw_id)
        accepted.append(record)
    return accepted
