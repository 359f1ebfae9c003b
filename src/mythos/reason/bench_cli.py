"""``mythos bench``: argument parsing, backend (or bundled local model) set-up, progress and exit status.

Exit status: 0 the run finished (or stopped at ``--time-limit``; rerun to resume); 1 the job failed (every item
errored, or the local model would not start); 2 usage or bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from mythos import envelope
from mythos.reason.bench import STRATEGIES, BenchConfig, BenchSettingsMismatch, run_bench
from mythos.reason.bench_questions import SETS, QuestionFileError, generated, load_jsonl
from mythos.reason.config import NotConfigured, build_backend, load_config_file, resolve_settings

EPILOG = """\
examples:
  mythos bench --local-model --limit 20                     # bundled SmolLM2-135M on llama.cpp, all strategies
  mythos bench --base-url http://127.0.0.1:8080/v1 --model qwen --set arithmetic --per-set 30
  mythos bench --local-model --questions mine.jsonl --strategies step-by-step,silent
  mythos bench --local-model --set open --strategies step-by-step,silent --judge silent,step-by-step

A question file is JSONL: {"question": "...", "answer": "42"} per line (optional: id, kind number|exact|open,
choices). Results go to --out DIR: results.jsonl (resumable), summary.md, summary.json, summary.png.
"""


def _fail(args: argparse.Namespace, status: int, message: str) -> int:
    """The message on stderr, and with --json the failure envelope on stdout; returns the exit status."""
    print(message.rstrip() if message.startswith("mythos") else f"mythos bench: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(
            envelope.dumps(envelope.failure(message.strip().splitlines()[0] if message.strip() else message))
        )
    return status


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mythos bench",
        description="Accuracy on questions with checkable answers: baselines (direct, step-by-step, "
        "self-consistency) vs mythos modes (silent, trace, agent) on one backend at one token budget.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q = parser.add_argument_group("questions")
    q.add_argument("--set", default="arithmetic,lookup", help=f"generated sets, any of {','.join(SETS)}")
    q.add_argument(
        "--questions", metavar="FILE.jsonl", help="your own {question, answer} JSONL (replaces --set)"
    )
    q.add_argument("--per-set", type=int, default=15, help="questions generated per set (15)")
    q.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    q.add_argument("--limit", type=int, help="use only the first N questions")
    s = parser.add_argument_group("strategies and budget")
    s.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated (default: all six)")
    s.add_argument("--budget", type=int, default=2000, help="tokens in+out per question and strategy (2000)")
    s.add_argument("--max-tokens-per-call", type=int, default=256, help="completion tokens per call (256)")
    s.add_argument("--votes", type=int, default=5, help="self-consistency votes at most (5)")
    s.add_argument("--vote-temperature", type=float, default=0.7, help="self-consistency temperature (0.7)")
    s.add_argument("--judge", metavar="A,B", help="blind pairwise judge of strategy A vs B on open questions")
    s.add_argument("--judge-model", help="judge model on the same server (default: the benched model)")
    s.add_argument("--judge-base-url", help="judge server (default: the benched server)")
    r = parser.add_argument_group("run")
    r.add_argument(
        "--out", default="bench-results", help="run directory (resumable; default ./bench-results)"
    )
    r.add_argument("--time-limit", type=float, help="stop starting new items after this many seconds")
    r.add_argument("--call-deadline", type=float, default=180.0, help="per call, seconds (180)")
    r.add_argument("--deadline", type=float, default=900.0, help="per engine run, seconds (900)")
    r.add_argument("--retries", type=int, default=1, help="transport retries per engine call (1)")
    r.add_argument("--concurrency", type=int, help="agent fan-out (default: the server's slots, else 1)")
    r.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    r.add_argument("--quiet", action="store_true", help="no per-item progress lines on stderr")
    b = parser.add_argument_group("backend")
    b.add_argument(
        "--local-model",
        action="store_true",
        help="start the bundled SmolLM2-135M-Instruct on llama.cpp (extra reason-local) for this run",
    )
    b.add_argument("--local-threads", type=int, default=1, help="CPU threads for --local-model (1)")
    b.add_argument("--provider", choices=("openai", "anthropic", "scripted"))
    b.add_argument("--base-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8080/v1")
    b.add_argument("--model", help="model name (env MYTHOS_REASON_MODEL)")
    b.add_argument("--config", help="TOML config file (default ~/.config/mythos/reason.toml)")
    b.add_argument(
        "--json-mode",
        choices=("off", "schema"),
        default="off",
        help="schema: the engine's calls ask the server for schema-constrained JSON (llama.cpp, vLLM, OpenAI); "
        "the baselines' calls carry no schema and are unchanged (default off)",
    )
    return parser


def _questions(args: argparse.Namespace):
    if args.per_set < 1:
        raise QuestionFileError(f"--per-set {args.per_set}: use 1 or more")
    if args.limit is not None and args.limit < 1:
        raise QuestionFileError(f"--limit {args.limit}: use 1 or more")
    questions = (
        load_jsonl(args.questions) if args.questions else generated(_csv(args.set), args.per_set, args.seed)
    )
    return questions[: args.limit] if args.limit else questions


def _engine_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def bench_main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    judge = tuple(_csv(args.judge)) if args.judge else None
    if judge is not None and len(judge) != 2:
        parser.error(f"--judge {args.judge}: name two strategies, e.g. --judge silent,step-by-step")
    try:
        questions = _questions(args)
        cfg = BenchConfig(
            strategies=tuple(_csv(args.strategies)),
            budget=args.budget,
            max_tokens_per_call=args.max_tokens_per_call,
            votes=args.votes,
            vote_temperature=args.vote_temperature,
            call_deadline_s=args.call_deadline,
            attempt_timeout_s=args.call_deadline,
            run_deadline_s=args.deadline,
            max_retries=args.retries,
            concurrency=args.concurrency or 1,
            time_limit_s=args.time_limit,
            judge=judge,  # type: ignore[arg-type]
        ).validate()
    except (QuestionFileError, ValueError) as exc:
        return _fail(args, 2, str(exc))
    if judge and not any(q.kind == "open" for q in questions):
        return _fail(args, 2, "--judge grades open questions; add --set open (or open questions)")
    server = None
    if args.local_model:
        if args.base_url or args.provider:
            return _fail(args, 2, "--local-model starts its own server; drop --base-url/--provider")
        from mythos.reason.local_model import LocalModelError, LocalModelServer

        try:
            server = LocalModelServer(threads=args.local_threads).start()
        except LocalModelError as exc:
            return _fail(args, 1, str(exc))
        args.base_url, args.provider, args.model = (
            server.base_url,
            "openai",
            args.model or "SmolLM2-135M-Instruct",
        )
        if args.concurrency is None:
            cfg.concurrency = server.slots

    def interrupted(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)  # so that `finally` stops the model server
    try:
        return _run(args, argv, cfg, questions, server)
    except KeyboardInterrupt:
        print(f"mythos bench: interrupted; rerun the same command to resume from {args.out}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.stop()


def _run(args, argv, cfg, questions, server) -> int:
    try:
        file_cfg = load_config_file(args.config)
        settings = resolve_settings(
            provider=args.provider,
            base_url=args.base_url,
            model=args.model,
            file_cfg=file_cfg,
            json_mode=args.json_mode,
        )
        backend = build_backend(settings)
        judge_backend = None
        if args.judge_model or args.judge_base_url:
            judge_settings = resolve_settings(
                provider="openai" if args.judge_base_url else settings.provider,
                base_url=args.judge_base_url or settings.base_url,
                model=args.judge_model or settings.model,
                file_cfg=file_cfg,
            )
            judge_backend = build_backend(judge_settings)
    except NotConfigured as exc:
        return _fail(args, 2, str(exc))
    except ValueError as exc:
        return _fail(args, 2, str(exc))
    meta = {
        "title": f"mythos bench: {settings.model}",
        "command": "mythos bench " + shlex.join(argv),
        "model": settings.model if server is None else f"{settings.model} ({Path(server.model_path).name})",
        "backend": {"provider": settings.provider, "model": settings.model, "json_mode": settings.json_mode},
        "backend_url": "bundled llama.cpp (xllamacpp), 127.0.0.1" if server else settings.base_url or "",
        "engine_commit": _engine_commit(),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "questions": len(questions),
    }
    if server is not None:
        meta["local_model"] = {
            "slots": server.slots,
            "load_s": round(server.load_s, 2),
            "threads": args.local_threads,
        }

    def progress(row: dict) -> None:
        if not args.quiet:
            what = row.get("outcome") or row.get("result")
            print(
                f"[{time.strftime('%H:%M:%S')}] {row['key']}: {what}, {row['tokens']} tokens, "
                f"{row['calls']} calls, {row['wall_s']:.1f}s",
                file=sys.stderr,
                flush=True,
            )

    async def go():
        try:
            return await run_bench(
                questions,
                backend,
                cfg,
                Path(args.out),
                meta=meta,
                judge_backend=judge_backend,
                progress=progress,
            )
        finally:
            for each in (backend, judge_backend):
                if each is not None:
                    await each.aclose()

    try:
        outcome = asyncio.run(go())
    except BenchSettingsMismatch as exc:
        return _fail(args, 2, str(exc))
    except OSError as exc:
        return _fail(args, 1, f"cannot write to {args.out}: {exc}")
    out = Path(args.out)
    failed = bool(outcome.ran) and outcome.errors == outcome.ran
    if not args.json:
        print((out / "summary.md").read_text(encoding="utf-8"), end="")
    elif not failed:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        print(
            envelope.dumps(
                envelope.success(out=str(out), ran=outcome.ran, resumed=outcome.skipped, **summary)
            )
        )
    tail = "" if outcome.complete else f"; {outcome.pending} items left (time limit): rerun to resume"
    print(
        f"mythos bench: {outcome.ran} items run, {outcome.skipped} resumed from {out / 'results.jsonl'}{tail}",
        file=sys.stderr,
    )
    if not outcome.summary.get("png"):
        print("mythos bench: no PNG (pip install 'mythos[reason-local]' for matplotlib)", file=sys.stderr)
    if failed:
        return _fail(args, 1, "every item failed (see 'error' in results.jsonl)")
    return 0
