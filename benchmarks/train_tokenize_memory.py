"""Peak memory of `mythos train`'s tokenization against file size: streamed (today) vs whole-file (before).

Each case runs in a fresh process (peak RSS = that process's ru_maxrss) on one synthetic text file of 1, 10 and
100 MB: train a BPE tokenizer on it, then write its token shards, exactly as ``TextSource`` does. "whole" is the
previous implementation, reproduced here for comparison: the file read as one string, the tokenizer trained on
that one document, and the document encoded in one call with its ids buffered in memory. It is skipped above
``--whole-max-mb`` (at 100 MB it would need ~19 GB). Writes benchmarks/results/train_tokenize_memory.{md,json}.

    python benchmarks/train_tokenize_memory.py [--sizes 1,10,100] [--vocab-size 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def make_file(path: Path, megabytes: int, seed: int = 0) -> None:
    """Prose-like text: words from a 20k-word vocabulary with Zipf frequencies, lines of 5-30 words."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=rng.integers(2, 10))) for _ in range(20_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    target = megabytes * 1_000_000
    with open(path, "w", encoding="utf-8") as fh:
        written = 0
        while written < target:
            words = rng.choice(len(vocab), size=200_000, p=weights)
            lengths = rng.integers(5, 31, size=20_000)
            out, i = [], 0
            for n in lengths:
                if i + n > len(words):
                    break
                out.append(" ".join(vocab[w] for w in words[i : i + n]) + ".\n")
                i += n
            chunk = "".join(out)[: target - written]
            fh.write(chunk)
            written += len(chunk)


def child(mode: str, path: str, out_dir: str, vocab_size: int) -> dict:
    """One measured run (in this fresh process)."""
    import numpy as np

    from mythos.train.data import eos_id, iter_documents, train_tokenizer, write_shards

    t0 = time.perf_counter()
    out = Path(out_dir)
    if mode == "streamed":
        tok = train_tokenizer(iter_documents(path, stream=True), vocab_size, out / "tokenizer.json")
        index = write_shards(iter_documents(path, stream=True), tok, out / "shards")
        tokens = index["tokens"]
    else:  # the previous implementation
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        tok = train_tokenizer([text], vocab_size, out / "tokenizer.json")
        ids = np.asarray(tok.encode_batch([text])[0].ids + [eos_id(tok)], dtype=np.int64)
        ids.astype(np.uint16).tofile(out / "shard_00000.bin")
        tokens = len(ids)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "tokens": int(tokens),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_kb / 1024),
    }


def measure(mode: str, path: Path, vocab_size: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        here = str(Path(__file__).parent)
        code = (
            f"import json, sys; sys.path.insert(0, {here!r}); from train_tokenize_memory import child; "
            f"print(json.dumps(child({mode!r}, {str(path)!r}, {out!r}, {vocab_size})))"
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "2"}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            return {"mode": mode, "error": done.stderr.strip().splitlines()[-1][:200]}
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,10,100", help="file sizes in MB")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--whole-max-mb", type=int, default=10, help="largest file for the whole-file baseline")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in [int(s) for s in args.sizes.split(",")]:
            path = Path(tmp) / f"corpus_{mb}mb.txt"
            make_file(path, mb)
            for mode in ("streamed", "whole"):
                if mode == "whole" and mb > args.whole_max_mb:
                    rows.append({"mb": mb, "mode": mode, "skipped": f"> --whole-max-mb {args.whole_max_mb}"})
                    continue
                row = {"mb": mb, **measure(mode, path, args.vocab_size)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_tokenize_memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Tokenization peak memory vs file size",
        "",
        "`python benchmarks/train_tokenize_memory.py` — one text file, tokenizer training + shard writing, peak RSS",
        f"of a fresh process (vocab {args.vocab_size}). *streamed*: today's `mythos train`; *whole*: the previous",
        "implementation (file read whole, encoded as one document).",
        "",
        "| file | mode | tokens | peak RSS (MB) | wall (s) |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r or "error" in r:
            lines.append(f"| {r['mb']} MB | {r['mode']} | – | {r.get('skipped') or r.get('error')} | – |")
        else:
            lines.append(
                f"| {r['mb']} MB | {r['mode']} | {r['tokens']:,} | {r['peak_rss_mb']:,} | {r['wall_s']} |"
            )
    (RESULTS / "train_tokenize_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
