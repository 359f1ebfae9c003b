"""``mythos think`` and ``mythos calibrate``: argument parsing, backend set-up, run records on disk.

Exit status of ``think``: 0 the model produced the answer; 3 no real answer — the model gave nothing usable
(template text, truncated or failed replies, a spent budget) and the output, which the engine assembled,
says so and names the cause; 2 usage or configuration error (bad flags, non-UTF-8 input).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from mythos.fsutil import slug
from mythos.reason.calls import CallPolicy
from mythos.reason.config import (
    NotConfigured,
    build_backend,
    load_config_file,
    resolve_settings,
    write_atomic,
)
from mythos.reason.engine import EngineConfig, think_sync
from mythos.reason.routing import EmptyQuestion

ENGINE_KEYS = {  # config-file key -> (EngineConfig or CallPolicy field, type)
    "run_deadline_s": float,
    "call_deadline_s": float,
    "attempt_timeout_s": float,
    "max_retries": int,
    "max_tokens": int,
    "max_cost": float,
    "max_concurrency": int,
    "silent_strategy": str,
    "price_in_per_mtok": float,
    "price_out_per_mtok": float,
    "max_tokens_per_call": int,
    "temperature": float,
    "max_retry_after_s": float,
}
# --slow-backend: a local CPU model takes minutes per call; these replace the defaults (not explicit values)
SLOW_BACKEND = {"run_deadline_s": 3600.0, "call_deadline_s": 900.0, "attempt_timeout_s": 900.0}
POLICY_FIELDS = {
    "call_deadline_s",
    "attempt_timeout_s",
    "max_retries",
    "max_tokens_per_call",
    "temperature",
    "max_retry_after_s",
}


def backend_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backend")
    group.add_argument(
        "--provider",
        choices=("openai", "anthropic", "scripted"),
        help="backend kind (default: from the config file or environment)",
    )
    group.add_argument("--base-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8080/v1")
    group.add_argument("--model", help="model name (env MYTHOS_REASON_MODEL)")
    group.add_argument("--config", help="TOML config file (default ~/.config/mythos/reason.toml)")
    group.add_argument(
        "--json-mode",
        choices=("off", "object", "schema"),
        help="ask an OpenAI-compatible server for JSON output (object) or schema-constrained "
        "output (schema); default off",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument("--deadline", type=float, dest="run_deadline_s", help="run deadline, seconds (300)")
    limits.add_argument(
        "--call-deadline",
        type=float,
        dest="call_deadline_s",
        help="per-call deadline including retries, seconds (60)",
    )
    limits.add_argument(
        "--attempt-timeout",
        type=float,
        dest="attempt_timeout_s",
        help="per-HTTP-attempt timeout, seconds (30)",
    )
    limits.add_argument("--retries", type=int, dest="max_retries", help="transport retries per call (2)")
    limits.add_argument("--max-tokens", type=int, dest="max_tokens", help="token budget for the whole run")
    limits.add_argument(
        "--max-cost",
        type=float,
        dest="max_cost",
        help="cost budget for the whole run; needs --price-in/--price-out (or prices in the config file)",
    )
    limits.add_argument(
        "--price-in", type=float, dest="price_in_per_mtok", help="price of 1M prompt tokens (for --max-cost)"
    )
    limits.add_argument(
        "--price-out", type=float, dest="price_out_per_mtok", help="price of 1M reply tokens (for --max-cost)"
    )
    limits.add_argument(
        "--max-tokens-per-call", type=int, dest="max_tokens_per_call", help="reply room of one call (800)"
    )
    limits.add_argument(
        "--concurrency",
        type=int,
        dest="max_concurrency",
        help="agent-mode parallel calls (5; capped at the server's slot count when it reports one)",
    )
    limits.add_argument(
        "--slow-backend",
        action="store_true",
        help="deadlines for a local CPU model (run 3600 s, call and attempt 900 s) unless set explicitly; "
        "without it, call deadlines still grow to fit the speed measured on earlier calls",
    )


def engine_config(args: argparse.Namespace, file_cfg: dict) -> EngineConfig:
    values: dict = dict(SLOW_BACKEND) if getattr(args, "slow_backend", False) else {}
    for key, kind in ENGINE_KEYS.items():
        if key in file_cfg:
            try:
                values[key] = kind(file_cfg[key])
            except (TypeError, ValueError):
                raise NotConfigured(f"config key {key}={file_cfg[key]!r} is not a {kind.__name__}") from None
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    policy = CallPolicy(**{k: v for k, v in values.items() if k in POLICY_FIELDS})
    return EngineConfig(policy=policy, **{k: v for k, v in values.items() if k not in POLICY_FIELDS})


def _records_dir() -> Path:
    return Path(os.environ.get("MYTHOS_REASON_RECORDS") or Path.home() / ".cache" / "mythos" / "reason")


def think_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mythos think",
        description="Reason about a question: Prelude -> lens rounds or parallel subagents -> Coda. "
        "A leading bare keyword picks the mode: trace (visible rounds), deep/agent (parallel "
        "subagents), quick (silent).",
        epilog=MODE_GUIDANCE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", nargs="*", help="[trace|deep|agent|quick] QUESTION …")
    parser.add_argument(
        "--replay",
        metavar="RECORD",
        help="re-run a saved run record offline from its recorded "
        "replies (the question and mode come from the record)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the run record (JSON) instead of the answer"
    )
    parser.add_argument(
        "--mode", choices=("direct", "silent", "trace", "agent"), help="force a mode (beats keywords)"
    )
    parser.add_argument("--think-aloud", action="store_true", help="same as the trace keyword")
    parser.add_argument("--silent-strategy", choices=("per_round", "single_call"), dest="silent_strategy")
    parser.add_argument(
        "--no-halting", action="store_true", help="run every budgeted round (for measurement)"
    )
    parser.add_argument(
        "--no-packets", action="store_true", help="merge agent findings without the packet compiler"
    )
    parser.add_argument(
        "--record",
        help="write the run record here (default: a file under "
        "$MYTHOS_REASON_RECORDS or ~/.cache/mythos/reason)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream replies from the server (servers that only stream work either way) and show each "
        "call's text and outcome on stderr as it arrives",
    )
    backend_options(parser)
    args = parser.parse_args(argv)
    if args.replay:
        return _replay(args)
    if not args.question:
        parser.error("a question is required (or --replay RECORD)")
    text = " ".join(args.question)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        print(
            "mythos think: the question is not valid UTF-8 text (check the terminal's or the file's "
            "encoding, e.g. convert it with iconv -t UTF-8)",
            file=sys.stderr,
        )
        return 2
    try:
        file_cfg = load_config_file(args.config)
        settings = resolve_settings(
            provider=args.provider,
            base_url=args.base_url,
            model=args.model,
            file_cfg=file_cfg,
            json_mode=args.json_mode,
        )
        cfg = engine_config(args, file_cfg)
        cfg.mode = args.mode or ("trace" if args.think_aloud else None)
        cfg.halting = not args.no_halting
        cfg.packets = not args.no_packets
        cfg.packets_dir = str(_records_dir() / "packets")
        cfg.validate()
        backend = build_backend(settings)
    except NotConfigured as exc:
        print(str(exc).rstrip(), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"mythos think: {exc}", file=sys.stderr)
        return 2
    on_call = None
    if args.stream:
        if hasattr(backend, "stream"):
            backend.stream = True
            backend.on_text = _stderr_text
        on_call = _progress
    try:
        record = think_sync(text, backend, cfg, on_call=on_call)
    except EmptyQuestion as exc:
        print(f"mythos think: {exc}", file=sys.stderr)
        return 2
    path = (
        Path(args.record)
        if args.record
        else _records_dir()
        / (
            f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{slug(record.question, 40, default='question')}.json"
        )
    )
    try:
        write_atomic(path, record.to_json() + "\n")
        print(f"mythos think: run record written to {path}", file=sys.stderr)
    except OSError as exc:
        print(f"mythos think: could not write the run record to {path}: {exc}", file=sys.stderr)
    _emit(record.to_json() + "\n" if args.json else record.rendered)
    return _status(record)


MODE_GUIDANCE = """\
which mode to use:
  The protocol's value is measured, not assumed: run `mythos bench` on your model (docs/reason.md). On
  SmolLM2-135M, the only model measured so far, plain "think step by step" and self-consistency (several
  samples, majority vote) beat silent, trace and agent, which gave no answer at 15-17x the tokens. Whether the
  modes pay on larger models or open, many-sided questions has not been measured: until your bench says so,
  prefer step-by-step or self-consistency for checkable questions. Discrete answers (numbers, yes/no, names)
  go through a vote/verifier step.

exit status: 0 answered; 3 no real answer (the output says why); 2 usage or bad input.
"""


def _status(record) -> int:
    """0 when the model answered; 3 (and the cause on stderr) when it did not."""
    if record.outcome == "answered":
        return 0
    print(f"mythos think: no real answer — {record.no_answer_reason or 'see the footer'}", file=sys.stderr)
    return 3


def _stderr_text(piece: str) -> None:
    sys.stderr.write(piece)
    sys.stderr.flush()


def _progress(call) -> None:
    took = call.t_end - call.t_start
    what = call.status if call.status == "ok" else f"{call.status} ({call.error_kind})"
    print(f"\n[{call.tag}] {what}, {took:.1f} s, {call.tokens_in}+{call.tokens_out} tokens", file=sys.stderr)


def _emit(text: str) -> None:
    """Print, and stay quiet when the reader goes away (``mythos think … | head``)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _replay(args: argparse.Namespace) -> int:
    from mythos.reason.scripted import ReplayBackend

    try:
        data = json.loads(Path(args.replay).read_text(encoding="utf-8"))
        saved = data["config"]
        policy = CallPolicy(**saved.pop("policy"))
        cfg = EngineConfig(policy=policy, **saved).validate()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(
            f"mythos think: cannot replay {args.replay}: {exc} (expected a run record written by mythos think)",
            file=sys.stderr,
        )
        return 2
    cfg.packets = cfg.packets and not args.no_packets
    keyword = data.get("invocation", {}).get("keyword")
    invocation = f"{keyword} {data['question']}" if keyword else data["question"]
    record = think_sync(invocation, ReplayBackend(data), cfg)
    _emit(record.to_json() + "\n" if args.json else record.rendered)
    return _status(record)


def calibrate_main(argv: list[str]) -> int:
    """``mythos calibrate``: exit 0 when every applicable structural check passes, 1 otherwise, 2 on bad
    input."""
    import asyncio

    from mythos.reason.calibrate import CASES, CaseRun, run_calibration, summarize, write_report

    parser = argparse.ArgumentParser(
        prog="mythos calibrate",
        description="Run the five calibration questions across modes and score the "
        "structural checks from the run records (content checks too, on a real model).",
    )
    parser.add_argument(
        "--scripted", action="store_true", help="use the built-in scripted backend (no model; structure only)"
    )
    parser.add_argument(
        "--out",
        default="calibration-reports",
        help="directory for the report (default ./calibration-reports)",
    )
    parser.add_argument("--cases", help="comma-separated case ids, e.g. Q1,Q3 (default: all five)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    backend_options(parser)
    args = parser.parse_args(argv)
    try:
        file_cfg = load_config_file(args.config)
        settings = resolve_settings(
            provider="scripted" if args.scripted else args.provider,
            base_url=args.base_url,
            model=args.model,
            file_cfg=file_cfg,
            json_mode=args.json_mode,
        )
        cfg = engine_config(args, file_cfg).validate()
        cfg.packets_dir = str(Path(args.out) / "packets")
        backend = build_backend(settings)
    except NotConfigured as exc:
        print(str(exc).replace("mythos think", "mythos calibrate").rstrip(), file=sys.stderr)
        print("(or run the suite on the scripted backend: mythos calibrate --scripted)", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"mythos calibrate: {exc}", file=sys.stderr)
        return 2
    if settings.provider == "scripted":
        backend.latency = 0.03  # a little service time, so parallel overlap is measured, not assumed
    case_ids = [c.strip().upper() for c in args.cases.split(",")] if args.cases else None
    known = {c.id for c in CASES}
    if case_ids and not set(case_ids) <= known:
        print(
            f"mythos calibrate: unknown case id(s) {sorted(set(case_ids) - known)}; use {sorted(known)}",
            file=sys.stderr,
        )
        return 2

    async def main() -> list[CaseRun]:
        try:
            return await run_calibration(backend, cfg, case_ids)
        finally:
            await backend.aclose()

    runs = asyncio.run(main())
    summary = summarize(runs)
    path = write_report(runs, summary, backend, Path(args.out), datetime.now(UTC).strftime("%Y%m%d-%H%M"))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        for key in ("upstream_literal", "structural", "content", "engine_extended"):
            t = summary[key]
            rate = f"{t['pass_rate']} %" if t["pass_rate"] is not None else "n/a"
            na = f", {t['not_applicable']} not applicable" if t["not_applicable"] else ""
            print(
                f"{key.replace('_', ' '):>17}: {t['pass']}/{t['checks'] - t['not_applicable']} ({rate}){na}"
            )
        print(f"report: {path}")
    return 0 if summary["structural"]["fail"] == 0 else 1
