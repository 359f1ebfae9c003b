"""Packet compiler scale benchmark: packet bytes, Prime digest bytes and compile time against record count.

    .venv/bin/python benchmarks/packets_scale.py --quick       # 1k and 10k, both scenarios, ~1 min
    .venv/bin/python benchmarks/packets_scale.py               # 1k, 10k, 100k (each once at 100k)
    .venv/bin/python benchmarks/packets_scale.py --sizes 1000000 --scenarios spread

Two scenarios per size, each generated once (many lanes, real source files with real hashes, verifier records with
recurring failures): ``spread`` (~2% of records on a few shared spans with divergent summaries) and ``hot`` (2% of
records all on ONE span, cited by that many agents: the shape that made a 613-record run emit 49,676 pairwise
contradictions). Each run is compiled in a fresh subprocess that reports wall time, CPU time and peak RSS, with
grouped contradictions (the default) and, where the pair count stays printable (hot span <= 200 records), pairwise
(the reference's form). Writes benchmarks/results/packets_scale.md and .json. The reference compiler is not
installed here; its §12 timings (specs/packets.md) are quoted for the spread scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mythos.packets.hashing import fnv1a64  # noqa: E402

# specs/packets.md §12: reference compiler median wall seconds and peak RSS (MB) on this VM.
REFERENCE = {1_010: (0.85, 8.5), 10_020: (11.70, 62), 20_020: (68.5, 121), 100_100: (1972.0, 592)}
KINDS = ["observation", "measurement", "symptom", "root-cause", "code-change", "proposal", "risk", "gap"]
WORDS = [
    "cache",
    "loop",
    "lock",
    "retry",
    "parser",
    "buffer",
    "index",
    "queue",
    "timeout",
    "schema",
    "token",
    "budget",
    "shard",
    "replica",
    "commit",
    "leader",
    "follower",
    "gate",
    "packet",
    "lane",
    "vessel",
    "hash",
    "span",
    "quorum",
    "epoch",
    "window",
    "socket",
    "thread",
    "heap",
    "stack",
]
HOT_CLAIMS = [
    "the cache never expires entries",
    "expiry runs hourly from the scheduler",
    "ttl is ignored on the read path",
    "entries are evicted at one thousand items",
    "the lock is held across the retry loop",
    "the parser drops the last buffer",
]
FINDINGS = [f"recurring failure {k}: {' '.join(WORDS[k : k + 3])}" for k in range(25)]
TIME = "2026-04-21T00:00:00Z"
RESULTS = Path(__file__).resolve().parent / "results" / "packets_scale"


def generate(
    out: Path,
    lanes: int,
    per_lane: int,
    *,
    seed: int = 1,
    hot_frac: float = 0.02,
    per_hot: int = 8,
    verifier_frac: float = 0.1,
    fail_frac: float = 0.2,
    hot_one: float = 0.0,
) -> Path:
    """Write project/ (cited sources) and run/ (a compiled-ready run) under ``out``; return the run dir."""
    rng = random.Random(seed)
    n = lanes * per_lane
    project, run = out / "project", out / "run"
    files, lines = max(20, n // 500), 2000  # span space ~4n, so random collisions stay ~n/8 like §12
    hashes = []
    (project / "src").mkdir(parents=True)
    for f in range(files):
        data = "".join(f"v{k} = {rng.randrange(1000)}\n" for k in range(lines)).encode()
        (project / "src" / f"mod_{f:05d}.py").write_bytes(data)
        hashes.append(fnv1a64(data))
    for sub in ("raw/subagents", "worker-results", "verifier-results", "state"):
        (run / sub).mkdir(parents=True)
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "run_id": f"run-bench-{n}",
                "objective_id": "obj-bench",
                "branch_id": "main",
                "pass_id": "pass-0002",
                "created_at": TIME,
                "source_root": "../project",
            },
            indent=2,
        )
    )
    (run / "task.md").write_text("Benchmark objective.\n")
    (run / "raw" / "objective.md").write_text("# Objective\n\nBenchmark objective.\n")
    hot = [
        (rng.randrange(files), rng.randrange(1, lines + 1))
        for _ in range(max(1, int(n * hot_frac / per_hot)))
    ]
    evidence = open(run / "worker-results" / "evidence.jsonl", "w")  # noqa: SIM115 (closed below, many writes)
    findings = open(run / "verifier-results" / "findings.jsonl", "w")  # noqa: SIM115
    evidence.write(
        json.dumps(
            {
                "id": "ev-objective",
                "kind": "objective",
                "summary": "Benchmark objective.",
                "source_ids": ["raw:objective.md"],
                "observed_at": TIME,
            }
        )
        + "\n"
    )
    for lane in range(lanes):
        raw_name = f"{lane + 1:04d}-lane-{lane}-agent-{lane}.md"
        raw_id, agent, lane_name = f"raw:subagents/{raw_name}", f"agent-{lane}", f"lane-{lane}"
        agent_lines, ev_lines, vf_lines = [], [], []
        for k in range(per_lane):
            on_hot = rng.random() < hot_one
            f, line = (
                (0, 1)
                if on_hot
                else hot[rng.randrange(len(hot))]
                if rng.random() < hot_frac
                else (rng.randrange(files), rng.randrange(1, lines + 1))
            )
            sid = f"file:src/mod_{f:05d}.py:{line}"
            record = {
                "id": f"ev-{lane}-{k}",
                "kind": rng.choice(KINDS),
                "summary": rng.choice(HOT_CLAIMS)
                if on_hot
                else " ".join(rng.choice(WORDS) for _ in range(8)),
                "source_ids": [sid],
            }
            agent_lines.append(json.dumps(record))
            record["source_ids"] = [raw_id, sid]
            record["source_refs"] = [
                {
                    "source_id": sid,
                    "path": f"src/mod_{f:05d}.py",
                    "kind": "file",
                    "hash": hashes[f],
                    "hash_alg": "fnv1a-64",
                    "span": str(line),
                    "observed_at": TIME,
                }
            ]
            record.update(observed_at=TIME, agent_id=agent, lane=lane_name)
            ev_lines.append(json.dumps(record, separators=(",", ":")))
        for k in range(int(per_lane * verifier_frac)):
            test_id = f"test:suite-{rng.randrange(50)}"
            failing = rng.random() < fail_frac
            vf_lines.append(
                json.dumps(
                    {
                        "id": f"vf-{lane}-{k}",
                        "summary": rng.choice(FINDINGS) if failing else f"check {lane}-{k} ok",
                        "status": "failed" if failing else "passed",
                        "verifier_score": 0.2 if failing else 1.0,
                        "source_ids": [raw_id, test_id],
                        "source_refs": [
                            {
                                "source_id": test_id,
                                "path": test_id[5:],
                                "kind": "test",
                                "hash": fnv1a64(test_id.encode()),
                                "hash_alg": "fnv1a-64",
                                "span": None,
                                "observed_at": TIME,
                            }
                        ],
                        "agent_id": agent,
                        "lane": lane_name,
                        "observed_at": TIME,
                    },
                    separators=(",", ":"),
                )
            )
        raw_text = (
            f"# Subagent Session {lane + 1:04d}\n\nlane: {lane_name}\nagent_id: {agent}\n\n"
            "```mythos-evidence-jsonl\n" + "\n".join(agent_lines) + "\n```\n"
        )
        raw_bytes = raw_text.encode()
        (run / "raw" / "subagents" / raw_name).write_bytes(raw_bytes)
        session = {
            "id": f"ev-subagent-session-{lane + 1:04d}-lane-{lane}",
            "kind": "subagent-session",
            "summary": f"Captured quarantined subagent output for lane {lane_name}.",
            "source_ids": [raw_id],
            "source_refs": [
                {
                    "source_id": raw_id,
                    "path": f"raw/subagents/{raw_name}",
                    "kind": "raw",
                    "hash": fnv1a64(raw_bytes),
                    "hash_alg": "fnv1a-64",
                    "span": None,
                    "observed_at": TIME,
                }
            ],
            "observed_at": TIME,
            "agent_id": agent,
            "lane": lane_name,
        }
        evidence.write(json.dumps(session, separators=(",", ":")) + "\n" + "\n".join(ev_lines) + "\n")
        if vf_lines:
            findings.write("\n".join(vf_lines) + "\n")
    evidence.close()
    findings.close()
    return run


CHILD = r"""
import json, resource, sys, time
from mythos.packets.compiler import compile_run
t = time.perf_counter()
summary = compile_run(sys.argv[1], return_packet=False, contradictions=sys.argv[2])
secs = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({**summary, "secs": secs, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}))
"""


def compile_once(run: Path, form: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(run), form],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "PATH": "/usr/bin"},
    )
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1k and 10k only")
    parser.add_argument("--sizes", type=int, nargs="*", help="evidence-record counts (lanes x per-lane)")
    parser.add_argument("--scenarios", nargs="*", choices=("spread", "hot"), default=["spread", "hot"])
    parser.add_argument(
        "--repeats", type=int, default=3, help="compiles per size below 100k (median reported)"
    )
    parser.add_argument("--keep", type=Path, help="keep generated runs under this directory")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file stem (.md and .json)")
    args = parser.parse_args()
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    shapes = {1_000: (10, 100), 10_000: (20, 500), 100_000: (100, 1000), 1_000_000: (200, 5000)}
    base = args.keep or Path(tempfile.mkdtemp(prefix="mythos-bench-"))
    rows: list[dict] = []
    try:
        for scenario in args.scenarios:
            for size in sizes:
                lanes, per_lane = shapes.get(size, (max(1, size // 1000), min(size, 1000)))
                out = base / f"{scenario}-n{size}"
                shutil.rmtree(out, ignore_errors=True)
                t = time.perf_counter()
                run = generate(out, lanes, per_lane, hot_one=0.02 if scenario == "hot" else 0.0)
                gen_secs = time.perf_counter() - t
                forms = ["grouped"]
                if scenario == "spread" or size * 0.02 <= 200:
                    forms.append("pairwise")
                for form in forms:
                    repeats = args.repeats if size < 100_000 else 1
                    results = [compile_once(run, form) for _ in range(repeats)]
                    row = {
                        "scenario": scenario,
                        "form": form,
                        "evidence": results[0]["evidence"],
                        "findings": results[0]["verifier_findings"],
                        "contradictions": results[0]["contradictions"],
                        "generate_s": round(gen_secs, 2),
                        "wall_s": round(statistics.median(r["secs"] for r in results), 3),
                        "cpu_s": round(statistics.median(r["cpu"] for r in results), 3),
                        "rss_mb": round(max(r["rss_mb"] for r in results)),
                        "packet_bytes": (run / "state" / "next_pass_packet.json").stat().st_size,
                        "digest_bytes": (run / "state" / "prime_digest.json").stat().st_size,
                        "runs": repeats,
                    }
                    ref = min(REFERENCE, key=lambda k: abs(k - row["evidence"]))
                    if (
                        scenario == "spread"
                        and form == "pairwise"
                        and abs(ref - row["evidence"]) / row["evidence"] < 0.05
                    ):
                        row["reference_wall_s"] = REFERENCE[ref][0]
                    rows.append(row)
                    print(
                        f"{scenario} n={row['evidence']} {form}: {row['wall_s']:.2f}s wall, {row['cpu_s']:.2f}s CPU, "
                        f"packet {row['packet_bytes'] / 1e6:.1f} MB, digest {row['digest_bytes'] / 1e3:.0f} kB, "
                        f"{row['contradictions']} contradictions",
                        file=sys.stderr,
                        flush=True,
                    )
                if not args.keep:
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    write_results(rows, args.out)
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def write_results(rows: list[dict], stem: Path) -> None:
    """The markdown table (docs link to it) and the raw rows as JSON, written atomically."""
    load = os.getloadavg()[0]
    lines = [
        "# Packet compiler scale (benchmarks/packets_scale.py)",
        "",
        f"Written by `benchmarks/packets_scale.py` on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs, load average {load:.1f} at the end of the run; the machine is shared, so CPU "
        "time is the stable number). Each compile runs in a fresh subprocess (CPU includes Python start-up and "
        "imports, ~0.1 s). `packet` is state/next_pass_packet.json (every record); `digest` is "
        "state/prime_digest.json, the bounded file Prime reads. `spread`: ~2% of records on a few shared spans; "
        "`hot`: 2% of records on one span. Reference wall: specs/packets.md §12, same VM, pairwise only.",
        "",
        "| scenario | contradictions | evidence | findings | entries | compile wall | compile CPU | peak RSS "
        "| packet | digest (Prime) | reference wall | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = f"{r['reference_wall_s']:.2f} s" if "reference_wall_s" in r else "-"
        lines.append(
            f"| {r['scenario']} | {r['form']} | {r['evidence']:,} | {r['findings']:,} | {r['contradictions']:,} "
            f"| {r['wall_s']:.2f} s | {r['cpu_s']:.2f} s | {r['rss_mb']} MB | {_mb(r['packet_bytes'])} "
            f"| {_mb(r['digest_bytes'])} | {ref} | {r['runs']} |"
        )
    lines.append("")
    for scenario in ("spread", "hot"):
        grouped = [r for r in rows if r["scenario"] == scenario and r["form"] == "grouped"]
        for before, after in zip(grouped, grouped[1:], strict=False):
            lines.append(
                f"- {scenario}, grouped: {before['evidence']:,} -> {after['evidence']:,} records "
                f"(x{after['evidence'] / before['evidence']:.1f}): CPU x{after['cpu_s'] / before['cpu_s']:.1f}, "
                f"wall x{after['wall_s'] / before['wall_s']:.1f}, packet x{after['packet_bytes'] / before['packet_bytes']:.1f}"
            )
    text = "\n".join(lines) + "\n"
    stem.parent.mkdir(parents=True, exist_ok=True)
    for path, data in (
        (stem.with_suffix(".md"), text),
        (stem.with_suffix(".json"), json.dumps(rows, indent=2) + "\n"),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(data)
        os.replace(tmp, path)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
