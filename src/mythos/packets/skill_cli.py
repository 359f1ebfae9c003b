"""`mythos-skill`: the reference's command line (init, ingest, compile, gate, ready, help, version) on our compiler.

Its users' skill files call ``mythos-skill …``; installing mythos gives them this script, so those files work
unchanged. Behaviour follows the reference's CLI contract (specs/packets.md §4, §6-§8): the same verbs, flags,
stdout shapes and exit codes (0 done, 1 failed, 2 usage). Differences are the documented ones of
`mythos packet` (docs/packets.md, "Migrating from mythos-skill"). Runs it creates list contradictions pairwise,
as the reference did; the Prime digest (state/prime_digest.json) is written either way.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from mythos.fsutil import slug

from .errors import PacketError

REFERENCE_CLI_VERSION = "0.1.0"
HELP = """mythos-skill {version} — explicit-state recurrent synthesis for AI agent runs (mythos packet compiler)

Usage:
  mythos-skill init <dir>                                   scaffold a run directory (and compile it)
  mythos-skill compile --run-dir <dir>                      recompile; prints the packet
  mythos-skill compile --run-dir <dir> --record-synthesis "<summary>"
  mythos-skill compile <objective words…>                   new run under ./.mythos/runs/, compiled
  mythos-skill ingest --run-dir <dir> --lane <lane> --agent-id <id> --from <raw.md>
  mythos-skill gate --run-dir <dir>                         strict gate; JSON report; exit 1 on errors
  mythos-skill ready                                        end-to-end self-test
  mythos-skill help | version

Same compiler as `mythos packet …` (see docs/packets.md).
"""


class UsageError(Exception):
    pass


def _flags(argv: list[str], names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """The reference's flag rule: each flag's value is the next token and may not start with ``--``."""
    values: dict[str, str] = {}
    rest: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in names:
            value = argv[index + 1] if index + 1 < len(argv) else None
            if value is None or value.startswith("--"):
                label = "summary" if token == "--record-synthesis" else "value"
                raise UsageError(f"Missing {label} for {token}")
            values[token] = value
            index += 2
        else:
            rest.append(token)
            index += 1
    return values, rest


def _print_packet(run: Path) -> None:
    from .layout import PACKET

    sys.stdout.write((run / PACKET).read_text("utf-8"))


def _compile(argv: list[str]) -> int:
    from .compiler import compile_run

    values, rest = _flags(argv, ("--run-dir", "--record-synthesis", "--root"))
    root = values.get("--root")
    if "--record-synthesis" in values and "--run-dir" not in values:
        raise UsageError("Missing value for --run-dir")
    if "--run-dir" in values:
        run = Path(values["--run-dir"])
        packet = compile_run(
            run, root=root, record_synthesis=values.get("--record-synthesis"), return_packet=False
        )
    else:
        objective = " ".join(rest).strip()
        if not objective:
            raise UsageError("usage: mythos-skill compile --run-dir <dir> | mythos-skill compile <objective>")
        from .runs import init_run

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        run = Path(".mythos") / "runs" / f"{stamp}-{slug(objective, 48, default='objective')}"
        init_run(run, task=objective, root=root, contradictions="pairwise")
        packet = compile_run(run, root=root, return_packet=False)
    print(
        f"compiled run_dir={run} pass_id={packet['pass_id']} evidence={packet['evidence']} "
        f"verifier_findings={packet['verifier_findings']}",
        file=sys.stderr,
    )
    _print_packet(run)
    return 0


def _ingest(argv: list[str]) -> int:
    from .ingest import ingest_file

    if "--stdin" in argv:
        raise UsageError("--stdin is not supported by mythos-skill ingest; pass --from <file>")
    values, _ = _flags(argv, ("--run-dir", "--lane", "--agent-id", "--from", "--root"))
    for name in ("--run-dir", "--lane", "--agent-id", "--from"):
        if name not in values:
            raise UsageError(f"Missing value for {name}")
    result = ingest_file(
        values["--run-dir"],
        lane=values["--lane"],
        agent_id=values["--agent-id"],
        path=values["--from"],
        root=values.get("--root"),
    )
    for problem in result.quarantined:
        print(f"quarantined: {problem['problem']} (fix: {problem['fix']})", file=sys.stderr)
    lost_all = bool(result.quarantined) and len(result.evidence_ids) + len(result.finding_ids) <= 1
    print(
        json.dumps(
            {
                "ok": not (lost_all and not result.blocked),
                "raw_path": str(Path(values["--run-dir"]) / result.raw_path),
                "raw_source_id": result.raw_source_id,
                "evidence_records": len(result.evidence_ids),
                "verifier_records": len(result.finding_ids),
                "quarantined": len(result.quarantined),
            },
            indent=2,
        )
    )
    return 1 if lost_all and not result.blocked else 0


def _gate(argv: list[str]) -> int:
    from .gate import gate_run
    from .layout import require_run_dir

    values, _ = _flags(argv, ("--run-dir", "--root"))
    if "--run-dir" not in values:
        raise UsageError("Missing value for --run-dir")
    require_run_dir(values["--run-dir"])
    result = gate_run(values["--run-dir"], root=values.get("--root"))
    print(json.dumps(result.to_reference_json(), indent=2, ensure_ascii=False))
    return 0 if result.passed else 1


def _init(argv: list[str]) -> int:
    from .layout import PACKET
    from .runs import init_run

    values, rest = _flags(argv, ("--root", "--task"))
    targets = [arg for arg in rest if not arg.startswith("--")]
    if not targets:
        raise UsageError("usage: mythos-skill init <dir>")
    run = init_run(
        targets[0], task=values.get("--task", ""), root=values.get("--root"), contradictions="pairwise"
    )
    print(f"initialised {run}; packet: {run / PACKET}")
    print(f"next: mythos-skill ingest --run-dir {run} --lane <lane> --agent-id <id> --from <raw.md>")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mythos-skill`` console script."""
    from mythos import __version__

    argv = list(sys.argv[1:] if argv is None else argv)
    command, args = (argv[0], argv[1:]) if argv else ("help", [])
    try:
        if command in ("help", "--help", "-h"):
            print(HELP.format(version=f"{REFERENCE_CLI_VERSION} (mythos {__version__})"), end="")
            return 0
        if command in ("version", "--version", "-V"):
            print(f"mythos-skill {REFERENCE_CLI_VERSION} (mythos {__version__})")
            return 0
        if command == "ready":
            from .readiness import run_readiness

            return 0 if run_readiness() else 1
        handler = {"init": _init, "compile": _compile, "ingest": _ingest, "gate": _gate}.get(command)
        if handler is None:
            print(f"mythos-skill: unknown command {command!r}; see `mythos-skill help`", file=sys.stderr)
            return 2
        return handler(args)
    except UsageError as exc:
        print(f"mythos-skill {command}: {exc}", file=sys.stderr)
        return 2
    except PacketError as exc:
        print(f"mythos-skill {command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mythos-skill {command}: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 1


def console() -> None:
    """``[project.scripts]`` target: exit with ``main``'s status."""
    raise SystemExit(main())
