"""`mythos packet ready`: the whole loop, end to end, in a throwaway directory."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from .compiler import compile_run
from .errors import PacketError
from .gate import gate_run
from .ingest import ingest_text
from .layout import PACKET
from .runs import init_run
from .schema import validate
from .vocab import EvidenceKind, FindingStatus


def lane_output(agent: str, line: int, claim: str, *, finding: str | None = None) -> str:
    """What a well-behaved subagent writes: prose (ignored) plus fenced machine records."""
    text = (
        f"Notes from {agent}: this prose never reaches the packet.\n\n```mythos-evidence-jsonl\n"
        + json.dumps(
            {
                "id": f"ev-{agent}-1",
                "kind": EvidenceKind.OBSERVATION.value,
                "summary": claim,
                "source_ids": [f"file:src/app.py:{line}"],
            }
        )
        + "\n```\n"
    )
    if finding:
        text += (
            "\n```mythos-verifier-jsonl\n"
            + json.dumps(
                {
                    "id": f"vf-{agent}-1",
                    "summary": finding,
                    "status": FindingStatus.PASSED.value,
                    "verifier_score": 1.0,
                    "source_ids": ["test:tests/test_app.py::test_lines"],
                }
            )
            + "\n```\n"
        )
    return text


def run_readiness(*, verbose: bool = False, say: Callable[[str], None] = print) -> bool:
    steps: list[str] = []

    def step(name: str, ok: bool, detail: str = "") -> None:
        steps.append(name)
        if verbose:
            say(f"  {'ok ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        if not ok:
            raise AssertionError(f"{name}{': ' + detail if detail else ''}")

    try:
        with tempfile.TemporaryDirectory(prefix="mythos-ready-") as tmp:
            project = Path(tmp) / "project"
            (project / "src").mkdir(parents=True)
            app = project / "src" / "app.py"
            app.write_text("".join(f"value_{n} = {n}\n" for n in range(1, 11)))
            run = Path(tmp) / "run"
            init_run(run, task="Check that app.py defines ten values.", root=project)
            packet = json.loads((run / PACKET).read_text())
            step("init compiles a schema-valid packet", not validate(packet))
            step("gate refuses a fresh run", not gate_run(run).passed)
            try:
                ingest_text(run, lane="prose", agent_id="agent-0", text="Just prose, no records.")
                step("prose-only output is rejected", False)
            except PacketError:
                step("prose-only output is rejected", True)
            for n, agent in enumerate(("agent-a", "agent-b", "agent-c"), start=1):
                result = ingest_text(
                    run,
                    lane=f"lane-{n}",
                    agent_id=agent,
                    text=lane_output(
                        agent,
                        n,
                        f"app.py line {n} assigns value_{n}",
                        finding="app.py has ten values" if n == 3 else None,
                    ),
                )
                step(
                    f"ingest lane-{n}", result.added >= 2 and not result.quarantined, str(result.quarantined)
                )
            try:
                compile_run(run, record_synthesis="too early")
                step("synthesis on a stale packet is refused", False)
            except PacketError:
                step("synthesis on a stale packet is refused", True)
            first = compile_run(run)
            step("compile after ingest", len(first["evidence"]) >= 7)
            bytes_a = (run / PACKET).read_bytes()
            compile_run(run)
            step("compile is deterministic", bytes_a == (run / PACKET).read_bytes())
            packet = compile_run(
                run, record_synthesis="app.py defines value_1..value_3 as cited; verifier passed."
            )
            step("synthesis advances the pass", packet["pass_id"] == "pass-0002")
            result = gate_run(run)
            step("gate passes", result.passed, json.dumps(result.failures))
            original = app.read_bytes()
            app.write_bytes(original + b"# tampered\n")
            result = gate_run(run)
            step(
                "gate catches a tampered source",
                not result.passed and any("hash mismatch" in f["message"] for f in result.failures),
            )
            packet = compile_run(run)
            step(
                "packet shows the mismatch",
                any(c["id"].startswith("con:integrity:") for c in packet["contradictions"]),
            )
            app.write_bytes(original)
            compile_run(run)
            step("gate passes again once restored", gate_run(run).passed)
    except AssertionError as exc:
        say(f"mythos readiness: FAILED at {exc}")
        return False
    say(f"mythos readiness: passed ({len(steps)} checks)")
    return True
