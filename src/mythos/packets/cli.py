"""`mythos packet …`: init, ingest, compile, gate, status, validate, ready — each a thin shell over the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import PacketError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2, like the reference
        self.print_usage(sys.stderr)
        print(f"mythos packet: {message}", file=sys.stderr)
        raise SystemExit(2)


def _flag_value(check, cast):
    """An argparse type that turns a PacketError from ``check`` into a usage error (exit 2) naming the flag."""

    def convert(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = text
        try:
            return check(value)
        except PacketError as exc:
            raise argparse.ArgumentTypeError(f"{exc.message} (fix: {exc.fix})") from None

    return convert


def _parser() -> argparse.ArgumentParser:
    from .gate import check_min_agents, check_min_direct_ratio
    from .vocab import ContradictionForm

    parser = _Parser(prog="mythos packet", description="Deterministic, hash-provenanced packet compiler.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(
        name: str, help_text: str, *, run_flag: bool = True, root: bool = True
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if run_flag:
            cmd.add_argument("--run-dir", required=True, help="the run directory")
        if root:
            cmd.add_argument(
                "--root",
                help="source root that relative file: refs resolve against "
                "(default: the run's manifest source_root)",
            )
        cmd.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
        return cmd

    init = command("init", "scaffold a run directory and compile its first packet", run_flag=False)
    init.add_argument("run_dir", metavar="RUN_DIR")
    init.add_argument("--task", default="", help="the objective (written to task.md)")

    ingest = command("ingest", "quarantine a subagent's output and append its validated records")
    ingest.add_argument("--lane", required=True)
    ingest.add_argument("--agent-id", required=True)
    source = ingest.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="from_file", metavar="FILE", help="the subagent's output file")
    source.add_argument("--stdin", action="store_true", help="read the subagent's output from stdin")

    comp = command("compile", "compile state/next_pass_packet.json (byte-identical for identical inputs)")
    comp.add_argument(
        "--record-synthesis", metavar="TEXT", help="record Prime's synthesis, advance pass_id, recompile"
    )
    comp.add_argument(
        "--print", dest="print_packet", action="store_true", help="print the packet file to stdout"
    )
    comp.add_argument(
        "--contradictions",
        choices=tuple(ContradictionForm),
        help="grouped: one entry per shared span (default for new runs); pairwise: every pair, as the "
        "reference writes (byte-compatible). Kept for later compiles of the run.",
    )

    gate = command("gate", "exit 0 only when the run may halt; every failure names check, record and fix")
    gate.add_argument(
        "--min-agents",
        type=_flag_value(check_min_agents, int),
        help="distinct agents required, >= 0 (default 3 or $MYTHOS_MIN_AGENT_COVERAGE)",
    )
    gate.add_argument(
        "--min-direct-ratio",
        type=_flag_value(check_min_direct_ratio, float),
        default=1.0,
        help="share of substantive evidence that must cite a direct source, 0..1 (default 1.0)",
    )
    gate.add_argument(
        "--format",
        choices=("mythos", "reference"),
        default="mythos",
        help="--json shape: mythos (failures with check/record/fix) or reference ({ok, errors, warnings})",
    )

    command("validate", "check state/next_pass_packet.json against the packet schema", root=False)
    command("status", "where a run stands: pass, counts, staleness, quarantined records", root=False)
    command("ready", "end-to-end self-test in a temp dir", run_flag=False, root=False)
    return parser


def _emit(args, payload: dict, text: str) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    elif text:
        print(text)


def packet_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except OSError as exc:  # a run file the OS refuses (a directory, no permission, disk full): name it
        exc = PacketError(
            f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc),
            field="run_dir",
            value=str(exc.filename) if exc.filename else None,
            fix="check the run directory's files and permissions",
        )
        if getattr(args, "json", False):
            print(json.dumps(exc.to_json(), indent=2, ensure_ascii=False))
        print(f"mythos packet {args.command}: {exc}", file=sys.stderr)
        return 1
    except PacketError as exc:
        if getattr(args, "json", False):
            print(json.dumps(exc.to_json(), indent=2, ensure_ascii=False))
        print(f"mythos packet {args.command}: {exc}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from . import compile_run, gate_run, ingest_file, ingest_text, init_run, run_readiness
    from .layout import DIGEST, PACKET

    if args.command == "init":
        run = init_run(args.run_dir, task=args.task, root=args.root)
        _emit(
            args,
            {"ok": True, "run_dir": str(run), "packet": str(run / PACKET), "pass_id": "pass-0001"},
            f"initialised {run} (pass-0001); packet: {run / PACKET}\n"
            f"next: have lanes write fenced records, then `mythos packet ingest --run-dir {run} --lane L "
            f"--agent-id A --from FILE`",
        )
        return 0
    if args.command == "ingest":
        if args.stdin:
            result = ingest_text(
                args.run_dir, lane=args.lane, agent_id=args.agent_id, text=sys.stdin.read(), root=args.root
            )
        else:
            result = ingest_file(
                args.run_dir, lane=args.lane, agent_id=args.agent_id, path=args.from_file, root=args.root
            )
        lost_all = bool(result.quarantined) and result.added <= 1 and not result.blocked
        text = f"ingested {result.added} record(s) as {result.raw_source_id}"
        if result.blocked:
            text += f"; lane reported BLOCKED: {result.blocked}"
        if result.quarantined:
            text += f"; quarantined {len(result.quarantined)} (see quarantine/rejected.jsonl)"
            if not args.json:
                for problem in result.quarantined:
                    print(f"  quarantined: {problem['problem']} (fix: {problem['fix']})", file=sys.stderr)
        payload = result.to_json()
        if lost_all:
            payload["ok"] = False
            payload["error"] = (
                f"every record was rejected ({len(result.quarantined)}): the lane contributed nothing; "
                "the packet's rejected_records says why, and the gate fails until it is fixed"
            )
            print(f"mythos packet ingest: {payload['error']}", file=sys.stderr)
        _emit(args, payload, text)
        return 1 if lost_all else 0
    if args.command == "compile":
        packet = compile_run(
            args.run_dir,
            root=args.root,
            record_synthesis=args.record_synthesis,
            return_packet=args.json,
            contradictions=args.contradictions,
        )
        path = Path(args.run_dir) / PACKET
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": True,
                        "packet_path": str(path),
                        "digest_path": str(Path(args.run_dir) / DIGEST),
                        "pass_id": packet["pass_id"],
                        "evidence": len(packet["evidence"]),
                        "verifier_findings": len(packet["verifier_findings"]),
                        "contradictions": len(packet["contradictions"]),
                        "halt": packet["halt_signals"][0]["kind"],
                    },
                    indent=2,
                )
            )
        elif args.print_packet:
            sys.stdout.write(path.read_text("utf-8"))
        else:
            print(
                f"compiled run_dir={args.run_dir} packet={path} pass_id={packet['pass_id']} "
                f"evidence={packet['evidence']} verifier_findings={packet['verifier_findings']} "
                f"contradictions={packet['contradictions']} digest={Path(args.run_dir) / DIGEST}"
            )
        return 0
    if args.command == "gate":
        result = gate_run(
            args.run_dir, root=args.root, min_agents=args.min_agents, min_direct_ratio=args.min_direct_ratio
        )
        lines = [
            f"FAIL [{f['check']}] {f['record'] or '-'}: {f['message']}\n     fix: {f['fix']}"
            for f in result.failures
        ]
        lines += [f"warn [{w['check']}] {w['record'] or '-'}: {w['message']}" for w in result.warnings]
        lines.append(
            "gate: passed — the run may halt"
            if result.passed
            else f"gate: failed ({len(result.failures)} failure(s))"
        )
        payload = result.to_reference_json() if args.format == "reference" else result.to_json()
        _emit(args, payload, "\n".join(lines))
        return 0 if result.passed else 1
    if args.command == "validate":
        from .layout import require_run_dir
        from .schema import validate

        run = require_run_dir(args.run_dir)
        try:
            packet = json.loads((run / PACKET).read_text("utf-8"))
        except FileNotFoundError:
            raise PacketError(
                "no compiled packet", field="run_dir", fix="run `mythos packet compile`"
            ) from None
        problems = validate(packet)
        _emit(
            args,
            {"ok": not problems, "problems": problems},
            "\n".join(problems) if problems else "packet is valid against schema 1.1.0",
        )
        return 0 if not problems else 1
    if args.command == "status":
        from .status import run_status

        status = run_status(args.run_dir)
        text = (
            f"{status['run_dir']}: {status['pass_id']}, {status['evidence']} evidence, "
            f"{status['verifier_findings']} findings ({status['failing_findings']} not passing), "
            f"{status['contradictions']} contradictions, {status['quarantined']} quarantined, "
            f"packet {status['packet_state']}, halt: {status['halt']}"
        )
        _emit(args, {"ok": True, **status}, text)
        return 0
    if args.command == "ready":
        if args.json:
            messages: list[str] = []
            ok = _ready_quiet(messages)
            print(json.dumps({"ok": ok, "message": messages[-1] if messages else ""}, indent=2))
            return 0 if ok else 1
        return 0 if run_readiness() else 1
    raise AssertionError(args.command)


def _ready_quiet(messages: list[str]) -> bool:
    from .readiness import run_readiness

    return run_readiness(say=messages.append)
