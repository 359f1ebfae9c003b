"""Packet compiler scale benchmark: synthetic runs of 1k … 1M evidence records, compile time and peak memory.

    .venv/bin/python benchmarks/packets_scale.py --quick       # 1k and 10k (+ all-pairs comparison at 1k), < 1 min
    .venv/bin/python benchmarks/packets_scale.py               # 1k, 10k, 100k, 1M
    .venv/bin/python benchmarks/packets_scale.py --sizes 100000 --keep /tmp/runs

Each size is generated once (many lanes, ~2% of records on shared "hot" spans with divergent summaries, verifier
records with recurring failures, real source files on disk with real hashes), then compiled in a fresh subprocess
that reports wall time and its own peak RSS (resource.getrusage). The reference Rust compiler is not installed
here; its timings on this VM come from specs/packets.md §12 and are printed as the baseline. Side by side in one
process we also time our linear contradiction detector against an all-pairs detector (the reference algorithm).
"""

from __future__ import annotations

import argparse
import json
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
FINDINGS = [f"recurring failure {k}: {' '.join(WORDS[k : k + 3])}" for k in range(25)]
TIME = "2026-04-21T00:00:00Z"


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
            f, line = (
                hot[rng.randrange(len(hot))]
                if rng.random() < hot_frac
                else (rng.randrange(files), rng.randrange(1, lines + 1))
            )
            sid = f"file:src/mod_{f:05d}.py:{line}"
            record = {
                "id": f"ev-{lane}-{k}",
                "kind": rng.choice(KINDS),
                "summary": " ".join(rng.choice(WORDS) for _ in range(8)),
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
summary = compile_run(sys.argv[1], return_packet=False)
secs = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({**summary, "secs": secs, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}))
"""


def compile_once(run: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(run)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "PATH": "/usr/bin"},
    )
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout)


def all_pairs_vs_linear(run: Path) -> tuple[float, float, int]:
    """Time our detector and an all-pairs one (the reference's algorithm) on the same records, in this process."""
    from mythos.packets.contradictions import detect_contradictions
    from mythos.packets.inputs import read_jsonl
    from mythos.packets.records import parse_evidence

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.packets.test_compile import _naive

    evidence = read_jsonl(run, "worker-results/evidence.jsonl", parse_evidence)
    t = time.perf_counter()
    fast = detect_contradictions(evidence)
    linear = time.perf_counter() - t
    t = time.perf_counter()
    slow = _naive(evidence)
    pairs = time.perf_counter() - t
    assert [c["id"] for c in fast] == [c["id"] for c in slow]
    return linear, pairs, len(fast)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1k and 10k only")
    parser.add_argument("--sizes", type=int, nargs="*", help="evidence-record counts (lanes x per-lane)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="compiles per size below 100k (median reported)"
    )
    parser.add_argument("--keep", type=Path, help="keep generated runs under this directory")
    parser.add_argument(
        "--reuse", action="store_true", help="with --keep: compile runs already generated there"
    )
    args = parser.parse_args()
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000])
    shapes = {1_000: (10, 100), 10_000: (20, 500), 100_000: (100, 1000), 1_000_000: (200, 5000)}
    base = args.keep or Path(tempfile.mkdtemp(prefix="mythos-bench-"))
    rows = []
    try:
        for size in sizes:
            lanes, per_lane = shapes.get(size, (max(1, size // 1000), min(size, 1000)))
            out = base / f"n{size}"
            t = time.perf_counter()
            reused = args.reuse and (out / "run" / "manifest.json").is_file()
            if reused:
                run = out / "run"
            else:
                shutil.rmtree(out, ignore_errors=True)
                run = generate(out, lanes, per_lane)
            gen_secs = time.perf_counter() - t if not reused else float("nan")
            repeats = args.repeats if size < 100_000 else 1
            results = [compile_once(run) for _ in range(repeats)]
            secs = statistics.median(r["secs"] for r in results)
            cpu = statistics.median(r["cpu"] for r in results)
            rss = max(r["rss_mb"] for r in results)
            packet_mb = (run / "state" / "next_pass_packet.json").stat().st_size / 1e6
            n_records = results[0]["evidence"]
            ref = min(REFERENCE, key=lambda k: abs(k - n_records))
            ref_note = (
                f"{REFERENCE[ref][0]:.2f}s ({REFERENCE[ref][0] / secs:.0f}x)"
                if abs(ref - n_records) / n_records < 0.05
                else "-"
            )
            rows.append(
                (
                    n_records,
                    results[0]["verifier_findings"],
                    results[0]["contradictions"],
                    gen_secs,
                    secs,
                    cpu,
                    rss,
                    packet_mb,
                    ref_note,
                    repeats,
                )
            )
            print(
                f"n={n_records}: compile {secs:.2f}s wall, {cpu:.2f}s CPU, peak RSS {rss:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
            if size == sizes[0] and size <= 2_000:
                linear, pairs, found = all_pairs_vs_linear(run)
                print(
                    f"contradiction detection on {n_records} records, same process: linear {linear * 1000:.1f} ms, "
                    f"all-pairs {pairs * 1000:.0f} ms ({pairs / linear:.0f}x), {found} contradictions"
                )
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(
        "| evidence | findings | contradictions | generate | compile wall (median) | compile CPU | peak RSS | packet "
        "| reference wall §12 (ratio) | runs |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, vf, con, gen, secs, cpu, rss, mb, ref, reps in rows:
        print(
            f"| {n:,} | {vf:,} | {con:,} | {'reused' if gen != gen else f'{gen:.1f} s'} | {secs:.2f} s | {cpu:.2f} s | {rss:.0f} MB | {mb:.1f} MB "
            f"| {ref} | {reps} |"
        )
    for before, after in zip(rows, rows[1:], strict=False):
        print(
            f"growth {before[0]:,} -> {after[0]:,} records (x{after[0] / before[0]:.1f}): wall x{after[4] / before[4]:.1f}"
            f", CPU x{after[5] / before[5]:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
