"""Compile a run directory into state/next_pass_packet.json, state/snapshot.json and the decision log.

Deterministic by construction: inputs are read in byte-sorted order, every list is in file order or explicitly
sorted, no clock, locale or environment value reaches the output, and floats are laid out by our own formatter.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mythos.fsutil import atomic_file, atomic_write, slug

from .contradictions import detect_contradictions
from .digest import build_digest
from .errors import PacketError
from .hashing import fnv1a64_text
from .inputs import current_fingerprint, read_jsonl, read_rejected, walk_raw
from .jsonfmt import F32, Stream, dumps_compact, write_pretty_object
from .layout import (
    DECISIONS,
    DIGEST,
    EVIDENCE,
    FINDINGS,
    INPUTS,
    PACKET,
    SNAPSHOT,
    STATE,
    TASK,
    read_manifest,
    reclaim_temps,
    require_run_dir,
    run_lock,
    source_root,
)
from .records import parse_evidence, parse_finding
from .sources import DIRECT_PREFIXES, SourceFiles, parse_span
from .vocab import ContradictionForm, EvidenceKind, FindingStatus, HaltKind, Severity

SCHEMA_VERSION = "1.1.0"


@dataclass
class Integrity:
    """A cited source whose current bytes no longer match what a record recorded (or that vanished)."""

    source_id: str
    path: str
    current_hash: str | None
    problem: str
    records: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)


@dataclass
class Compiled:
    manifest: dict
    objective: str
    evidence: list[dict]
    findings: list[dict]
    raw_refs: list[dict]
    sources: list[dict]
    contradictions: list[dict]
    integrity: list[Integrity]
    fingerprint: dict[str, str]
    rejected: list[dict] = field(default_factory=list)
    form: str = ContradictionForm.GROUPED.value


def _read_inputs(run_dir: Path):
    fingerprint: dict[str, str] = {}
    with run_lock(run_dir, shared=True):
        manifest_bytes = (run_dir / "manifest.json").read_bytes()
        manifest = read_manifest(run_dir)
        fingerprint["manifest.json"] = hashlib.sha256(manifest_bytes).hexdigest()
        try:
            task_bytes = (run_dir / TASK).read_bytes()
        except FileNotFoundError:
            raise PacketError(
                f"{run_dir / TASK} is missing", field="task.md", fix="write the objective into task.md"
            ) from None
        fingerprint[TASK] = hashlib.sha256(task_bytes).hexdigest()
        try:
            objective = task_bytes.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise PacketError(
                "task.md is not valid UTF-8", field="task.md", fix="re-encode task.md as UTF-8"
            ) from None
        raw_refs = walk_raw(run_dir, manifest["created_at"], fingerprint)
        evidence = read_jsonl(run_dir, EVIDENCE, parse_evidence, fingerprint)
        findings = read_jsonl(run_dir, FINDINGS, parse_finding, fingerprint)
        rejected = read_rejected(run_dir, fingerprint)
    return manifest, objective, raw_refs, evidence, findings, rejected, dict(sorted(fingerprint.items()))


def _check_unique_ids(records: list[dict], rel: str) -> None:
    seen: dict[str, int] = {}
    for position, record in enumerate(records):
        first = seen.setdefault(record["id"], position)
        if first != position:
            raise PacketError(
                f"{rel}: id {record['id']!r} is used by two records (records {first + 1} and {position + 1})",
                field="id",
                value=record["id"],
                fix="give every record its own id (ingest rejects duplicates)",
            )


def latest_findings(findings: list[dict]) -> list[dict]:
    """A verifier closes (or reopens) a finding by re-reporting its id: the latest report wins, listed at the
    position of the first one, so the order stays stable across passes."""
    position: dict[str, int] = {}
    result: list[dict] = []
    for finding in findings:
        at = position.get(finding["id"])
        if at is None:
            position[finding["id"]] = len(result)
            result.append(finding)
        else:
            result[at] = finding
    return result


def _verify_file_refs(evidence: list[dict], findings: list[dict], files: SourceFiles) -> dict[str, Integrity]:
    """Re-hash every file: ref now; drift (changed, vanished, span out of range) is reported, never hidden."""
    issues: dict[str, Integrity] = {}
    for record in (*evidence, *findings):
        for ref in record.get("source_refs", ()):
            if ref["kind"] != "file":
                continue
            where = f"record {record['id']!r} source_ref {ref['source_id']!r}"
            if ref["span"] is not None and parse_span(ref["span"]) is None:
                raise PacketError(
                    f"{where}: span {ref['span']!r} is not a line range",
                    field="span",
                    value=ref["span"],
                    fix="write a line number N or a range A-B",
                )
            try:
                facts = files.facts(ref["path"], field=f"{where} path")
            except PacketError as exc:
                if (
                    "outside the source root" in exc.message
                    or "absolute" in exc.message
                    or "backslash" in exc.message
                ):
                    raise PacketError(
                        f"{where}: {exc.message}", field="path", value=ref["path"], fix=exc.fix
                    ) from None
                issue = issues.setdefault(
                    ref["source_id"], Integrity(ref["source_id"], ref["path"], None, exc.message)
                )
                issue.records.append(record["id"])
                issue.recorded.append(ref["hash"])
                continue
            problem = None
            if facts.hash != ref["hash"]:
                problem = f"hash mismatch: recorded {ref['hash']}, file now hashes to {facts.hash}"
            elif ref["span"] is not None:
                start, end = parse_span(ref["span"])  # type: ignore[misc]
                if not 1 <= start <= end <= facts.lines:
                    problem = f"span {ref['span']} is outside the file's line range 1-{facts.lines}"
            if problem:
                issue = issues.setdefault(
                    ref["source_id"], Integrity(ref["source_id"], ref["path"], facts.hash, problem)
                )
                issue.records.append(record["id"])
                issue.recorded.append(ref["hash"])
    return issues


def _assemble_sources(
    raw_refs: list[dict],
    evidence: list[dict],
    findings: list[dict],
    created_at: str,
    issues: dict[str, Integrity],
) -> list[dict]:
    """All sources, sorted by id, first declaration wins (reference §5.3); file refs carry today's hash."""
    candidates: list[dict] = list(raw_refs)
    declared_by: dict[int, str] = {}
    for record in (*evidence, *findings):
        for ref in record.get("source_refs", ()):
            declared_by[len(candidates)] = record["id"]
            candidates.append(ref)
    for record in evidence:
        candidates.append(
            {
                "source_id": f"evidence:{record['id']}",
                "path": EVIDENCE,
                "kind": record["kind"],
                "hash": fnv1a64_text(record["summary"]),
                "hash_alg": "fnv1a-64",
                "span": record["id"],
                "observed_at": record["observed_at"],
            }
        )
    for record in findings:
        candidates.append(
            {
                "source_id": f"verifier:{record['id']}",
                "path": FINDINGS,
                "kind": "verifier",
                "hash": fnv1a64_text(record["summary"]),
                "hash_alg": "fnv1a-64",
                "span": record["id"],
                "observed_at": created_at,
            }
        )
    order = sorted(range(len(candidates)), key=lambda i: candidates[i]["source_id"])
    sources: list[dict] = []
    current: dict | None = None
    for position in order:
        ref = candidates[position]
        if current is None or ref["source_id"] != current["source_id"]:
            current = ref
            if ref["kind"] == "file" and ref["source_id"] in issues:
                fresh = issues[ref["source_id"]].current_hash
                if fresh is not None:
                    current = {**ref, "hash": fresh}
            sources.append(current)
            continue
        if ref["kind"] == "file" or current["kind"] == "file":
            continue  # file refs were checked against the bytes on disk above
        if ref["hash"] != current["hash"]:
            issue = issues.setdefault(
                ref["source_id"],
                Integrity(
                    ref["source_id"],
                    current["path"],
                    current["hash"],
                    f"declared twice with divergent hash: {current['hash']} vs {ref['hash']}",
                ),
            )
            issue.records.append(declared_by.get(position, ref["source_id"]))
            issue.recorded.append(ref["hash"])
    return sources


def _integrity_contradictions(issues: dict[str, Integrity], registry: dict[str, dict]) -> list[dict]:
    result = []
    for source_id in sorted(issues):
        issue = issues[source_id]
        records = sorted(set(issue.records))
        con = {
            "id": f"con:integrity:{source_id}",
            "summary": f"Source {source_id} ({issue.path}) no longer matches what was ingested: {issue.problem}. "
            f"Records citing it: {', '.join(records)}",
            "conflicting_item_ids": records,
            "severity": Severity.HIGH.value,
            "source_ids": [source_id],
        }
        if source_id in registry:
            con["source_refs"] = [registry[source_id]]
        result.append(con)
    return result


def compile_inputs(run_dir: Path, root: str | Path | None = None, form: str | None = None) -> Compiled:
    """Read and check a run; everything the packet and snapshot need, before anything is written."""
    form = check_form(form if form is not None else recorded_form(run_dir))
    manifest, objective, raw_refs, evidence, findings, rejected, fingerprint = _read_inputs(run_dir)
    _check_unique_ids(evidence, EVIDENCE)
    reported = findings  # every report, for counting what each ingest contributed
    findings = latest_findings(findings)
    files = SourceFiles(source_root(run_dir, root, manifest))
    issues = _verify_file_refs(evidence, findings, files)
    sources = _assemble_sources(raw_refs, evidence, findings, manifest["created_at"], issues)
    registry = {ref["source_id"]: ref for ref in sources}
    contradictions = detect_contradictions(evidence, form) + _integrity_contradictions(issues, registry)
    contradictions.sort(key=lambda con: con["id"])
    return Compiled(
        manifest,
        objective,
        evidence,
        findings,
        raw_refs,
        sources,
        contradictions,
        [issues[k] for k in sorted(issues)],
        fingerprint,
        _rejected_section(rejected, evidence, reported),
        form,
    )


def check_form(form: str) -> str:
    """The contradiction form by name; a PacketError naming the choices otherwise."""
    if form not in tuple(ContradictionForm):
        raise PacketError(
            f"unknown contradiction form {form!r}",
            field="contradictions",
            value=form,
            fix=f"use one of {', '.join(ContradictionForm)}",
        )
    return str(form)


def recorded_form(run_dir: Path) -> str:
    """The form the run was last compiled with (state/inputs.json), else grouped."""
    try:
        stored = json.loads((run_dir / INPUTS).read_text("utf-8"))
    except (OSError, ValueError):
        return ContradictionForm.GROUPED.value
    form = stored.get("contradictions") if isinstance(stored, dict) else None
    return form if form in tuple(ContradictionForm) else ContradictionForm.GROUPED.value


def _rejected_section(rejected: list[dict], evidence: list[dict], findings: list[dict]) -> list[dict]:
    """Per ingest that lost records: how many of its records reached the run, how many were refused, and why."""
    if not rejected:
        return []
    accepted: dict[str, int] = {}
    for record in (*evidence, *findings):
        if record.get("kind") == EvidenceKind.SUBAGENT_SESSION:
            continue
        for sid in record["source_ids"]:
            if sid.startswith("raw:subagents/"):
                accepted[sid] = accepted.get(sid, 0) + 1
                break
    by_ingest: dict[str, dict] = {}
    for line in rejected:
        source_id = line.get("ingest") if isinstance(line.get("ingest"), str) else "quarantine/rejected.jsonl"
        entry = by_ingest.setdefault(
            source_id,
            {
                "source_id": source_id,
                "lane": line.get("lane") if isinstance(line.get("lane"), str) else "",
                "agent_id": line.get("agent_id") if isinstance(line.get("agent_id"), str) else "",
                "accepted": accepted.get(source_id, 0),
                "rejected": 0,
                "reasons": [],
            },
        )
        entry["rejected"] += 1
        reason: dict = {}
        for name in ("block", "line"):
            if type(line.get(name)) is int:
                reason[name] = line[name]
        if isinstance(line.get("kind"), str):
            reason["kind"] = line["kind"]
        if isinstance(line.get("field"), str | type(None)) and "field" in line:
            reason["field"] = line["field"]
        reason["problem"] = str(line.get("problem", "unreadable quarantine line"))
        if isinstance(line.get("fix"), str | type(None)) and "fix" in line:
            reason["fix"] = line["fix"]
        entry["reasons"].append(reason)
    return [by_ingest[key] for key in sorted(by_ingest)]


def _fact(record: dict) -> dict:
    confidence = record.get("confidence")
    return {
        "id": f"fact:{record['id']}",
        "statement": record["summary"],
        "confidence": F32(confidence if confidence is not None else 0.7),
        "objective_relevance": F32(0.8),
        "novelty_gain": F32(0.3),
        "needs_raw_drilldown": False,
        "source_ids": record["source_ids"],
    }


def _distinct(ids: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _derived(c: Compiled) -> dict:
    created_at = c.manifest["created_at"]
    failing = [f for f in c.findings if f["status"] != FindingStatus.PASSED]
    hypotheses = [
        {
            "id": f"hypothesis:{f['id']}",
            "statement": f"Resolve verifier finding: {f['summary']}",
            "confidence": F32(0.6),
            "verifier_score": f["verifier_score"],
            "source_ids": f["source_ids"],
        }
        for f in failing
    ]
    actions = [
        {
            "id": f"action:{f['id']}",
            "title": f"Fix {f['summary']}",
            "rationale": "Verifier finding is not passing and needs a concrete next action.",
            "actionability_score": F32(0.8),
            "decision_dependency_ids": [f["id"]],
            "source_ids": f["source_ids"],
        }
        for f in failing
    ]
    questions = [f"What concrete change resolves `{f['summary']}`?" for f in failing]
    groups: dict[str, list[dict]] = {}
    for finding in failing:
        groups.setdefault(finding["summary"], []).append(finding)
    all_by_summary: dict[str, list[dict]] = {}
    for finding in c.findings:
        if finding["summary"] in groups:
            all_by_summary.setdefault(finding["summary"], []).append(finding)
    patterns = []
    for summary in sorted(groups, key=lambda s: s.encode("utf-8")):
        count = len(groups[summary])
        if count < 2:
            continue
        patterns.append(
            {
                "id": f"failure:{slug(summary, None, default='')}",
                "summary": summary,
                "count": count,
                "last_seen_at": created_at,
                "impact": (Severity.HIGH if count >= 3 else Severity.MEDIUM).value,
                "source_ids": _distinct(sid for f in all_by_summary[summary] for sid in f["source_ids"]),
            }
        )
    if failing:
        halt = {
            "id": f"halt:{created_at}:continue",
            "kind": HaltKind.CONTINUE.value,
            "contribution": F32(1.0),
            "rationale": f"{len(failing)} verifier finding(s) are still not passing.",
            "source_ids": _distinct(sid for f in failing for sid in f["source_ids"]),
        }
    elif c.integrity:
        halt = {
            "id": f"halt:{created_at}:continue",
            "kind": HaltKind.CONTINUE.value,
            "contribution": F32(1.0),
            "rationale": f"{len(c.integrity)} cited source(s) changed since ingest.",
            "source_ids": [issue.source_id for issue in c.integrity],
        }
    elif c.findings:
        halt = {
            "id": f"halt:{created_at}:ready",
            "kind": HaltKind.READY.value,
            "contribution": F32(1.0),
            "rationale": "All verifier findings are passing.",
            "source_ids": _distinct(sid for f in c.findings for sid in f["source_ids"]),
        }
    else:
        # The reference cannot compile a run without findings; we say why the run may not halt yet.
        anchor = (
            [f"evidence:{c.evidence[0]['id']}"]
            if c.evidence
            else [ref["source_id"] for ref in c.raw_refs[:1]]
        )
        if not anchor:
            raise PacketError(
                "the run has no evidence, no verifier findings and no raw artefacts",
                field="run_dir",
                fix="ingest subagent output before compiling",
            )
        halt = {
            "id": f"halt:{created_at}:continue",
            "kind": HaltKind.CONTINUE.value,
            "contribution": F32(1.0),
            "rationale": "No verifier findings have been recorded yet.",
            "source_ids": anchor,
        }
    return {
        "hypotheses": hypotheses,
        "actions": actions,
        "questions": questions,
        "patterns": patterns,
        "halt": [halt],
    }


def _validate_sources(c: Compiled, derived: dict) -> None:
    """Every cited id must exist; direct ids need a ref on the same record (reference §5.7, same order)."""
    registry = {ref["source_id"] for ref in c.sources}
    registry.update(ref["source_id"] for ref in c.raw_refs)

    def ids(kind: str, item_id: str, source_ids: list[str]) -> None:
        if not source_ids:
            raise PacketError(
                f"{kind} `{item_id}` must reference at least one source id",
                field="source_ids",
                value=item_id,
                fix="cite at least one source id",
            )
        for sid in source_ids:
            if sid not in registry:
                raise PacketError(
                    f"{kind} `{item_id}` references unknown source id `{sid}`",
                    field="source_ids",
                    value=sid,
                    fix="cite a raw:, evidence:, verifier: id or declare a source_ref for it",
                )

    def local(kind: str, record: dict) -> None:
        own = set(record["source_ids"])
        declared = set()
        for ref in record.get("source_refs", ()):
            declared.add(ref["source_id"])
            if ref["source_id"] not in own:
                raise PacketError(
                    f"{kind} `{record['id']}` declares source_ref `{ref['source_id']}` but does not "
                    "list it in source_ids",
                    field="source_ids",
                    value=ref["source_id"],
                    fix="add the ref's source_id to source_ids",
                )
        for sid in record["source_ids"]:
            if sid.startswith(DIRECT_PREFIXES) and sid not in declared:
                raise PacketError(
                    f"{kind} `{record['id']}` uses direct source id `{sid}` without a matching local "
                    "source_ref",
                    field="source_refs",
                    value=sid,
                    fix="add a source_ref with that source_id (ingest synthesises one)",
                )

    for record in c.evidence:
        local("evidence", record)
        ids("evidence", record["id"], record["source_ids"])
    for record in c.evidence:
        ids("trusted_fact", f"fact:{record['id']}", record["source_ids"])
    for item in derived["hypotheses"]:
        ids("hypothesis", item["id"], item["source_ids"])
    for item in c.contradictions:
        ids("contradiction", item["id"], item["source_ids"])
    for item in derived["patterns"]:
        ids("recurring_failure_pattern", item["id"], item["source_ids"])
    for item in derived["actions"]:
        ids("candidate_action", item["id"], item["source_ids"])
    for record in c.findings:
        local("verifier_finding", record)
        ids("verifier_finding", record["id"], record["source_ids"])
    for item in derived["halt"]:
        ids("halt_signal", item["id"], item["source_ids"])


def _validate_snapshot(c: Compiled) -> None:
    registry = {ref["source_id"] for ref in c.sources}
    for record in c.evidence:
        for sid in record["source_ids"]:
            if sid not in registry:
                raise PacketError(
                    f"worker result `worker:{record['id']}` references unknown artifact `{sid}`",
                    field="source_ids",
                    value=sid,
                    fix="cite a raw:, evidence:, verifier: id or declare a source_ref for it",
                )


def _snapshot_fields(c: Compiled):
    m = c.manifest
    inputs = (
        [
            {
                "id": "input:task",
                "kind": "task",
                "summary": c.objective,
                "ref_ids": [c.raw_refs[0]["source_id"]],
            }
        ]
        if c.raw_refs
        else []
    )
    return [
        ("schema_version", SCHEMA_VERSION),
        ("run_id", m["run_id"]),
        ("pass_id", m["pass_id"]),
        ("branch_id", m["branch_id"]),
        ("created_at", m["created_at"]),
        ("inputs", inputs),
        (
            "worker_results",
            Stream(
                {
                    "id": f"worker:{r['id']}",
                    "worker": "local-evidence-ingest",
                    "status": "ok",
                    "output_ids": r["source_ids"],
                    "notes": r["summary"],
                }
                for r in c.evidence
            ),
        ),
        (
            "state_delta",
            Stream(
                {
                    "id": f"delta:{r['id']}",
                    "kind": "evidence-observed",
                    "target_id": r["id"],
                    "summary": r["summary"],
                }
                for r in c.evidence
            ),
        ),
        ("artifact_refs", Stream(c.sources)),
    ]


def _packet_fields(c: Compiled, d: dict, *, lazy: bool):
    m = c.manifest
    facts = (_fact(r) for r in c.evidence)
    return [
        ("schema_version", SCHEMA_VERSION),
        ("objective_id", m["objective_id"]),
        ("run_id", m["run_id"]),
        ("branch_id", m["branch_id"]),
        ("pass_id", m["pass_id"]),
        ("objective", c.objective),
        ("evidence", Stream(c.evidence)),
        ("trusted_facts", Stream(facts) if lazy else list(facts)),
        ("active_hypotheses", d["hypotheses"]),
        ("contradictions", Stream(c.contradictions)),
        ("recurring_failure_patterns", d["patterns"]),
        ("candidate_actions", d["actions"]),
        ("verifier_findings", Stream(c.findings)),
        ("open_questions", d["questions"]),
        ("raw_drilldown_refs", c.raw_refs),
        ("halt_signals", d["halt"]),
        ("sources", Stream(c.sources)),
        *([("rejected_records", c.rejected)] if c.rejected else []),
    ]


class _Sha256Sink(io.RawIOBase):
    """A binary sink that hashes what is written and passes it on to ``target`` (if any)."""

    def __init__(self, target=None):
        self.sha = hashlib.sha256()
        self.target = target

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)


def _stream_pretty(sink: _Sha256Sink, fields) -> str:
    out = io.TextIOWrapper(io.BufferedWriter(sink, 1 << 20), encoding="utf-8", newline="\n")
    write_pretty_object(out, fields)
    out.flush()
    out.detach()
    return sink.sha.hexdigest()


def _write_streamed(path: Path, fields) -> str:
    """Write a pretty JSON object atomically; return the sha256 of the bytes written."""
    with atomic_file(path) as handle:
        return _stream_pretty(_Sha256Sink(handle), fields)


def packet_sha256(c: Compiled, d: dict) -> str:
    """sha256 of the packet file compile would write for ``c``, computed without writing it."""
    return _stream_pretty(_Sha256Sink(), _packet_fields(c, d, lazy=True))


def _decision_line(c: Compiled, d: dict) -> str:
    m = c.manifest
    return dumps_compact(
        {
            "id": f"decision:{m['run_id']}:{m['pass_id']}",
            "run_id": m["run_id"],
            "pass_id": m["pass_id"],
            "decision_kind": "compile-next-pass-packet",
            "summary": "Compiled raw run artifacts into a source-backed next-pass packet.",
            "source_ids": sorted(ref["source_id"] for ref in c.sources),
            "selected_action_ids": [a["id"] for a in d["actions"]],
            "created_at": m["created_at"],
            "promotion": None,
        }
    )


def _update_decision_log(run_dir: Path, line: str) -> None:
    """One line per pass: a recompile of the same pass replaces its line, so the log depends on history only."""
    path = run_dir / DECISIONS
    decision_id = json.loads(line)["id"]
    kept: list[str] = []
    if path.exists():
        for existing in path.read_text("utf-8").splitlines():
            if not existing.strip():
                continue
            try:
                same = json.loads(existing).get("id") == decision_id
            except ValueError:
                same = False
            if not same:
                kept.append(existing)
    kept.append(line)
    atomic_write(path, "\n".join(kept) + "\n")


def compile_run(
    run_dir: str | Path,
    *,
    root: str | Path | None = None,
    record_synthesis: str | None = None,
    return_packet: bool = True,
    contradictions: str | None = None,
) -> dict:
    """Compile ``run_dir`` and return the packet (see docs/packets.md).

    ``contradictions`` picks the form (``grouped`` or ``pairwise``); None keeps the run's last one (grouped for a
    new run). Temp files left by a writer that was killed are removed first.
    """
    run = require_run_dir(run_dir)
    if contradictions is not None:
        check_form(contradictions)
    reclaim_temps(run)
    if record_synthesis is not None:
        from .synthesis import record_synthesis_inputs

        record_synthesis_inputs(run, record_synthesis)
    compiled, derived = build(run, root, contradictions)
    (run / STATE).mkdir(exist_ok=True)
    _write_streamed(run / SNAPSHOT, _snapshot_fields(compiled))
    packet_sha = _write_streamed(run / PACKET, _packet_fields(compiled, derived, lazy=True))
    digest = digest_text(compiled, derived)
    atomic_write(run / DIGEST, digest)
    _update_decision_log(run, _decision_line(compiled, derived))
    atomic_write(
        run / INPUTS,
        json.dumps(
            {
                "inputs": compiled.fingerprint,
                "contradictions": compiled.form,
                "packet_sha256": packet_sha,
                "digest_sha256": hashlib.sha256(digest.encode("utf-8")).hexdigest(),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n",
    )
    if not return_packet:
        return {
            "pass_id": compiled.manifest["pass_id"],
            "evidence": len(compiled.evidence),
            "verifier_findings": len(compiled.findings),
            "contradictions": len(compiled.contradictions),
        }
    return packet_dict(compiled, derived)


def build(run: Path, root=None, form: str | None = None) -> tuple[Compiled, dict]:
    """Compile in memory: read, check and derive everything the outputs hold, writing nothing."""
    compiled = compile_inputs(run, root, form)
    derived = _derived(compiled)
    _validate_snapshot(compiled)
    _validate_sources(compiled, derived)
    return compiled, derived


def digest_text(c: Compiled, d: dict) -> str:
    """The bounded Prime-facing digest (state/prime_digest.json) as text."""
    view = {  # the sections the digest reads, without materialising trusted_facts
        "run_id": c.manifest["run_id"],
        "pass_id": c.manifest["pass_id"],
        "objective": c.objective,
        "evidence": c.evidence,
        "verifier_findings": c.findings,
        "contradictions": c.contradictions,
        "candidate_actions": d["actions"],
        "halt_signals": d["halt"],
        "sources": c.sources,
        "rejected_records": c.rejected,
    }
    digest = build_digest(c.manifest, view, form=c.form)
    return json.dumps(digest, indent=1, ensure_ascii=False) + "\n"


def packet_dict(c: Compiled, d: dict) -> dict:
    """The packet as plain Python data (the same content as the file; f32 fields are F32 floats)."""
    packet: dict = {}
    for key, value in _packet_fields(c, d, lazy=False):
        packet[key] = list(value.items) if isinstance(value, Stream) else value
    return packet


def file_sha256(path: Path) -> str | None:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
    except OSError:
        return None
    return sha.hexdigest()


def packet_state(run_dir: Path) -> str:
    """``fresh``, ``stale`` (inputs changed since the compile), ``edited`` (the packet is not the file compile
    wrote) or ``missing``. Cheap: it compares recorded hashes; the gate goes further and recompiles."""
    if not (run_dir / PACKET).is_file():
        return "missing"
    try:
        stored = json.loads((run_dir / INPUTS).read_text("utf-8"))
        inputs = stored["inputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return "stale"
    if inputs != current_fingerprint(run_dir):
        return "stale"
    if stored.get("packet_sha256") != file_sha256(run_dir / PACKET):
        return "edited"
    return "fresh"


def is_stale(run_dir: Path) -> bool:
    """True unless the packet is exactly what the last compile wrote from the current inputs."""
    return packet_state(run_dir) != "fresh"
