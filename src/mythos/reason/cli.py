"""``mythos think`` and ``mythos calibrate``: argument parsing, backend set-up, run records on disk.

Exit status of ``think``: 0 the model produced the answer; 3 the answer had to be assembled by the engine
because the backend gave nothing usable (the footer says why); 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

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
        "--max-cost", type=float, dest="max_cost", help="cost budget (uses the config's prices)"
    )
    limits.add_argument(
        "--concurrency", type=int, dest="max_concurrency", help="agent-mode parallel calls (5)"
    )


def engine_config(args: argparse.Namespace, file_cfg: dict) -> EngineConfig:
    values: dict = {}
    for key, kind in ENGINE_KEYS.items():
        if key in file_cfg:
            try:
                values[key] = kind(file_cfg[key])
            except (TypeError, ValueError):
                raise NotConfigured(f"config key {key}={file_cfg[key]!r} is not a {kind.__name__}") from None
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    policy_fields = {
        "call_deadline_s",
        "attempt_timeout_s",
        "max_retries",
        "max_tokens_per_call",
        "temperature",
    }
    policy = CallPolicy(**{k: v for k, v in values.items() if k in policy_fields})
    cfg = EngineConfig(policy=policy, **{k: v for k, v in values.items() if k not in policy_fields})
    return cfg


def _records_dir() -> Path:
    return Path(os.environ.get("MYTHOS_REASON_RECORDS") or Path.home() / ".cache" / "mythos" / "reason")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "question"


def think_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mythos think",
        description="Reason about a question: Prelude -> lens rounds or parallel subagents -> Coda. "
        "A leading bare keyword picks the mode: trace (visible rounds), deep/agent (parallel "
        "subagents), quick (silent).",
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
    backend_options(parser)
    args = parser.parse_args(argv)
    if args.replay:
        return _replay(args)
    if not args.question:
        parser.error("a question is required (or --replay RECORD)")
    text = " ".join(args.question)
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
    try:
        record = think_sync(text, backend, cfg)
    except EmptyQuestion as exc:
        print(f"mythos think: {exc}", file=sys.stderr)
        return 2
    path = (
        Path(args.record)
        if args.record
        else _records_dir()
        / (f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{_slug(record.question)}.json")
    )
    try:
        write_atomic(path, record.to_json() + "\n")
        print(f"mythos think: run record written to {path}", file=sys.stderr)
    except OSError as exc:
        print(f"mythos think: could not write the run record to {path}: {exc}", file=sys.stderr)
    _emit(record.to_json() + "\n" if args.json else record.rendered)
    return 3 if record.coda.get("fallback") else 0


def _emit(text: str) -> None:
    """Print, and stay quiet when the reader goes away (``mythos think … | head``)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _replay(args: argparse.Namespace) -> int:
    import json

    from mythos.reason.backends import ReplayBackend

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
    return 3 if record.coda.get("fallback") else 0


def calibrate_main(argv: list[str]) -> int:
    from mythos.reason.calibrate import calibrate_cli

    return calibrate_cli(argv)
