"""Reasoning-engine benchmarks against a real OpenAI-compatible server on 127.0.0.1 (and the scripted backend).

Sections (all print a table; medians over repeated runs):
  modes     calls, tokens and wall time per mode, with token ratios against silent
  cases     exact calls/tokens per phase for every calibration (case, mode) on the scripted backend
  parallel  agent-mode speedup against the same run at concurrency 1 (server with N slots, fixed latency)
  halting   tokens and rounds saved by early halting against the same runs with halting off
  faults    completion rate under injected fault rates 0/10/30/50 % (HTTP server and scripted backend)

    .venv/bin/python benchmarks/reason_engine.py [--quick] [--section modes,cases,parallel,halting,faults]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import time

from mythos.reason import EngineConfig, OpenAIBackend, ScriptedBackend
from mythos.reason.calibrate import CASES
from mythos.reason.calls import CallPolicy
from mythos.reason.canned import canned_reply
from mythos.reason.engine import Engine
from mythos.reason.loopback import LoopbackServer
from mythos.reason.scripted import Fault, ScriptedRequest

GENERIC = "Should we adopt Conventional Commits for our team repository?"
LOOKUP = "What is 2+2?"
Q2, Q5 = CASES[1].question, CASES[4].question


def config(**kw) -> EngineConfig:
    policy = CallPolicy(
        call_deadline_s=kw.pop("call_deadline_s", 10.0),
        attempt_timeout_s=kw.pop("attempt_timeout_s", 5.0),
        backoff_base_s=0.02,
        backoff_max_s=0.1,
        max_retries=kw.pop("max_retries", 2),
    )
    kw.setdefault("packets", False)
    kw.setdefault("run_deadline_s", 60.0)
    return EngineConfig(policy=policy, **kw)


async def one_run(backend, invocation: str, cfg: EngineConfig):
    t = time.perf_counter()
    rec = await Engine(backend, cfg).run(invocation)
    return rec, time.perf_counter() - t


def run_http(base_url: str, model: str, invocation: str, cfg: EngineConfig):
    async def go():
        backend = OpenAIBackend(model=model, base_url=base_url)
        try:
            return await one_run(backend, invocation, cfg)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def med(values) -> float:
    return statistics.median(values) if values else float("nan")


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")


# ------------------------------------------------------------------------------------------------- sections


def bench_modes(reps: int, latency: float) -> None:
    cases = [
        ("direct", LOOKUP, {}),
        ("silent (per round)", GENERIC, {}),
        ("silent (single call)", GENERIC, {"silent_strategy": "single_call"}),
        ("trace", f"trace {GENERIC}", {}),
        ("agent", f"deep {GENERIC}", {}),
        ("agent + packets", f"deep {GENERIC}", {"packets": True}),
    ]
    rows, silent_tokens = [], None
    with LoopbackServer(latency_s=latency, slots=8) as srv:
        for name, inv, extra in cases:
            recs = [run_http(srv.base_url, "ok", inv, config(**extra)) for _ in range(reps)]
            calls = med([r.totals["calls"] for r, _ in recs])
            tin = med([r.totals["tokens_in"] for r, _ in recs])
            tout = med([r.totals["tokens_out"] for r, _ in recs])
            wall = med([w for _, w in recs])
            if name == "silent (per round)":
                silent_tokens = tin + tout
            rows.append(
                [
                    name,
                    int(calls),
                    int(tin),
                    int(tout),
                    int(tin + tout),
                    wall,
                    f"{(tin + tout) / silent_tokens:.2f}x" if silent_tokens else "-",
                ]
            )
    table(
        f"Per mode — loopback server, {latency * 1000:.0f} ms per call, 8 slots, median of {reps}",
        ["mode", "calls", "tokens in", "tokens out", "tokens", "wall s", "tokens vs silent"],
        rows,
    )


def bench_cases() -> None:
    """Every calibration (case, mode) on the scripted backend: exact calls and tokens per phase."""
    from mythos.reason.calibrate import invocation_for

    rows = []
    for case in CASES:
        for mode in case.modes:
            rec, wall = asyncio.run(
                one_run(ScriptedBackend(latency=0.01), invocation_for(case, mode), config())
            )
            calls = [c for c in rec.calls if c.status != "skipped"]
            fan = [c for c in calls if c.phase == "subagent"]
            # critical path: the sequential calls plus the slowest subagent
            critical = sum(c.t_end - c.t_start for c in calls if c.phase != "subagent") + max(
                (c.t_end - c.t_start for c in fan), default=0.0
            )
            phases = ", ".join(f"{k} {v['calls']}" for k, v in rec.totals["by_phase"].items())
            rows.append(
                [
                    case.id,
                    mode,
                    rec.totals["calls"],
                    phases,
                    rec.totals["tokens_in"],
                    rec.totals["tokens_out"],
                    wall,
                    critical,
                ]
            )
    table(
        "Calibration cases on the scripted backend (10 ms per call): exact calls and tokens",
        ["case", "mode", "calls", "calls by phase", "tokens in", "tokens out", "wall s", "critical path s"],
        rows,
    )


def bench_parallel(reps: int, latency: float) -> None:
    rows = []
    for n_slots in (5, 2, 1):
        with LoopbackServer(latency_s=latency, slots=n_slots) as srv:
            walls = {}
            for conc in (5, 1):
                out = [
                    run_http(srv.base_url, "ok", f"deep {Q5}", config(max_concurrency=conc))
                    for _ in range(reps)
                ]
                fan = []
                for rec, _ in out:
                    subs = [c for c in rec.calls if c.phase == "subagent"]
                    fan.append(max(c.t_end for c in subs) - min(c.t_start for c in subs))
                walls[conc] = (med(fan), med([w for _, w in out]))
            speed = walls[1][0] / walls[5][0]
            rows.append(
                [
                    f"{n_slots} slot(s)",
                    5,
                    walls[1][0],
                    walls[5][0],
                    f"{speed:.2f}x",
                    f"{speed / 5:.0%}",
                    walls[1][1],
                    walls[5][1],
                    f"{walls[1][1] / walls[5][1]:.2f}x",
                ]
            )
    table(
        f"Agent fan-out speedup — Q5 (5 subagents), {latency * 1000:.0f} ms per call, median of {reps}",
        [
            "server",
            "subagents",
            "fan-out s (conc 1)",
            "fan-out s (conc 5)",
            "speedup",
            "efficiency",
            "run s (conc 1)",
            "run s (conc 5)",
            "run speedup",
        ],
        rows,
    )
    # a straggler: one subagent 3x slower — the fan-out takes the slowest call, not the sum
    lat = latency

    def per_tag(tag: str) -> float:
        return 3 * lat if tag.startswith("sub:C:") else lat

    out = []
    for conc in (5, 1):
        rec, wall = asyncio.run(
            one_run(ScriptedBackend(latency=per_tag), f"deep {Q5}", config(max_concurrency=conc))
        )
        subs = [c for c in rec.calls if c.phase == "subagent"]
        out.append((conc, max(c.t_end for c in subs) - min(c.t_start for c in subs)))
    table(
        "Straggler (scripted backend, subagent C at 3x latency)",
        ["concurrency", "fan-out s", "ideal s"],
        [[c, w, (3 * lat if c == 5 else 7 * lat)] for c, w in out],
    )


def bench_halting(reps: int, quick: bool) -> None:
    rows = []
    questions = [(c.id, c.question) for c in CASES] + [("generic", GENERIC)]
    totals = {"on": 0, "off": 0}
    with LoopbackServer() as srv:
        for mode in ("trace",) if quick else ("trace", "quick"):
            for qid, q in questions:
                on = [run_http(srv.base_url, "ok", f"{mode} {q}", config())[0] for _ in range(reps)]
                off = [
                    run_http(srv.base_url, "ok", f"{mode} {q}", config(halting=False))[0] for _ in range(reps)
                ]
                t_on, t_off = med([r.totals["tokens"] for r in on]), med([r.totals["tokens"] for r in off])
                totals["on"] += t_on
                totals["off"] += t_off
                rows.append(
                    [
                        f"{qid} {'silent' if mode == 'quick' else mode}",
                        on[0].halting["reason"],
                        len(on[0].rounds),
                        len(off[0].rounds),
                        int(t_on),
                        int(t_off),
                        f"{1 - t_on / t_off:.0%}",
                    ]
                )
    rows.append(
        ["all", "", "", "", int(totals["on"]), int(totals["off"]), f"{1 - totals['on'] / totals['off']:.0%}"]
    )
    table(
        "Early halting vs halting off (canned model, loopback server)",
        ["run", "halting reason", "rounds (on)", "rounds (off)", "tokens (on)", "tokens (off)", "saved"],
        rows,
    )


def random_faults(p: float, seed: int):
    rng = random.Random(seed)
    kinds = [
        Fault("http_5xx"),
        Fault("http_429"),
        Fault("empty"),
        Fault("garbage"),
        Fault("text", "Happy to help! This is a fascinating question."),
        Fault("connection"),
    ]

    def respond(request: ScriptedRequest):
        if rng.random() < p:
            return rng.choice(kinds)
        return canned_reply(request.tag, request.messages)

    return respond


def bench_faults(runs_http: int, runs_scripted: int) -> None:
    invocations = [f"trace {GENERIC}", f"deep {Q5}", f"quick {Q2}", GENERIC]
    rows = []
    with LoopbackServer() as srv:
        for p in (0.0, 0.1, 0.3, 0.5):
            for tier in ("http", "scripted"):
                n = runs_http if tier == "http" else runs_scripted
                done = model_answer = escaped = 0
                retries, fallbacks = [], 0
                for i in range(n):
                    inv = invocations[i % len(invocations)]
                    try:
                        if tier == "http":
                            rec, _ = run_http(srv.base_url, f"faulty/{p}/{i}", inv, config())
                        else:
                            rec, _ = asyncio.run(one_run(ScriptedBackend(random_faults(p, i)), inv, config()))
                    except Exception:  # counted, never expected
                        escaped += 1
                        continue
                    ok = bool(rec.coda.get("final_answer")) and rec.footer.startswith("*Depth:")
                    done += ok
                    model_answer += ok and not rec.coda.get("fallback")
                    fallbacks += bool(rec.fallbacks or rec.fallback_row not in (None, "none"))
                    retries.append(rec.totals["retries"] + rec.totals["repairs"])
                rows.append(
                    [
                        f"{p:.0%}",
                        tier,
                        n,
                        f"{done / n:.0%}",
                        f"{model_answer / n:.0%}",
                        escaped,
                        f"{fallbacks / n:.0%}",
                        statistics.mean(retries) if retries else 0.0,
                    ]
                )
    table(
        "Completion under injected faults (per call; retries 2, one repair)",
        [
            "fault rate",
            "backend",
            "runs",
            "completed (answer + footer)",
            "answered by the model",
            "exceptions escaped",
            "runs with a fallback",
            "mean retries+repairs",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter latencies (< 1 min)")
    parser.add_argument("--section", default="modes,cases,parallel,halting,faults")
    args = parser.parse_args(argv)
    sections = args.section.split(",")
    import openai

    print(f"# mythos reason benchmarks ({'quick' if args.quick else 'full'})")
    print(
        f"python {platform.python_version()}, openai {openai.__version__}, {platform.machine()}, "
        f"loopback server on 127.0.0.1, canned phase-aware replies (token counts = word counts)"
    )
    t0 = time.perf_counter()
    if "modes" in sections:
        bench_modes(reps=1 if args.quick else 5, latency=0.02 if args.quick else 0.05)
    if "cases" in sections:
        bench_cases()
    if "parallel" in sections:
        bench_parallel(reps=1 if args.quick else 3, latency=0.1 if args.quick else 0.3)
    if "halting" in sections:
        bench_halting(reps=1, quick=args.quick)
    if "faults" in sections:
        bench_faults(runs_http=6 if args.quick else 20, runs_scripted=30 if args.quick else 100)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
