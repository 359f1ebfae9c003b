"""Greedy generation through transformers (an exported directory) vs mythos's own ``Mythos.generate``, one process.

What a user pays for going through ``AutoModelForCausalLM.generate``: the same weights and math (the export
ships mythos's modules), plus transformers' generation loop and the wrapper's cache bookkeeping. Runs alternate
between the two, medians of several repeats; the outputs must be equal token for token. A left-padded batch
(rows of different lengths) is timed too: the export runs it row by row, mythos has no padded-batch generate, so
its baseline is the same rows generated one after another.

    .venv/bin/python benchmarks/hf_generate.py [--quick]      # writes benchmarks/results/hf_generate.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

SMALL = dict(
    vocab_size=4096, dim=256, n_heads=8, n_kv_heads=2, max_seq_len=1024, max_loop_iters=4, prelude_layers=1,
    coda_layers=1, kv_lora_rank=64, q_lora_rank=128, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32,
    n_experts=8, n_shared_experts=1, n_experts_per_tok=2, expert_dim=128, lora_rank=8,
)  # fmt: skip
RESULTS = Path(__file__).parent / "results"


def _time(fn) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short prompt, few tokens, 2 repeats")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    from mythos.hf.export import export_hf
    from mythos.model import Mythos, MythosConfig

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    prompt_len, new, repeats = (16, 8, 2) if args.quick else (64, 64, 5)
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for attn in ("mla", "gqa"):
            torch.manual_seed(0)
            ours = Mythos(MythosConfig(**SMALL, attn_type=attn)).eval()
            ours.save_pretrained(Path(tmp) / attn)
            export_hf(Path(tmp) / attn, Path(tmp) / f"{attn}-hf")
            hf = AutoModelForCausalLM.from_pretrained(Path(tmp) / f"{attn}-hf", trust_remote_code=True).eval()
            for batch in (1, 4):
                ids = torch.randint(0, SMALL["vocab_size"], (batch, prompt_len))
                t_ours, t_hf = [], []
                for _ in range(repeats):
                    a, out_ours = _time(lambda: ours.generate(ids, max_new_tokens=new, n_loops=4))  # noqa: B023
                    kw = dict(max_new_tokens=new, num_steps=4, do_sample=False, pad_token_id=0)
                    b, out_hf = _time(lambda: hf.generate(ids, **kw))  # noqa: B023
                    assert torch.equal(out_ours, out_hf), "exported model diverged from mythos"
                    t_ours.append(a)
                    t_hf.append(b)
                rows.append(_row(attn, f"batch {batch}", batch * new, t_ours, t_hf))
            # a padded batch: 4 rows of lengths prompt_len, 3/4, 1/2, 1/4 of it
            lengths = [prompt_len, prompt_len * 3 // 4, prompt_len // 2, prompt_len // 4]
            prompts = [torch.randint(0, SMALL["vocab_size"], (1, n)) for n in lengths]
            padded = torch.zeros((4, prompt_len), dtype=torch.long)
            mask = torch.zeros((4, prompt_len), dtype=torch.long)
            for i, p in enumerate(prompts):
                padded[i, prompt_len - p.shape[1] :] = p[0]
                mask[i, prompt_len - p.shape[1] :] = 1
            t_ours, t_hf = [], []
            for _ in range(repeats):
                a, outs = _time(lambda: [ours.generate(p, max_new_tokens=new, n_loops=4) for p in prompts])  # noqa: B023
                kw = dict(
                    attention_mask=mask, max_new_tokens=new, num_steps=4, do_sample=False, pad_token_id=0
                )
                b, out_hf = _time(lambda: hf.generate(padded, **kw))  # noqa: B023
                for i, o in enumerate(outs):
                    assert torch.equal(out_hf[i, prompt_len:], o[0, lengths[i] :]), "padded row diverged"
                t_ours.append(a)
                t_hf.append(b)
            rows.append(
                _row(attn, "4 rows, left-padded", 4 * new, t_ours, t_hf, ours_label="rows one by one")
            )
    _write(rows, prompt_len, new, repeats, args.quick, (load_before, os.getloadavg()[0]))


def _row(attn, case, tokens, t_ours, t_hf, ours_label="Mythos.generate") -> dict:
    m_ours, m_hf = statistics.median(t_ours), statistics.median(t_hf)
    return {
        "attn": attn,
        "case": case,
        "baseline": ours_label,
        "mythos_tok_s": tokens / m_ours,
        "hf_tok_s": tokens / m_hf,
        "hf_over_mythos_time": m_hf / m_ours,
    }


def _write(rows, prompt_len, new, repeats, quick, load) -> None:
    lines = [
        f"# transformers generate (export) vs mythos generate — prompt {prompt_len}, {new} new tokens, "
        f"num_steps 4, greedy, 1 thread, median of {repeats}",
        "",
        "| attn | case | mythos baseline | mythos tok/s | transformers tok/s | time ratio (hf / mythos) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['attn']} | {r['case']} | {r['baseline']} | {r['mythos_tok_s']:.1f} | {r['hf_tok_s']:.1f} "
            f"| {r['hf_over_mythos_time']:.2f} |"
        )
    lines += [
        "",
        f"Every row checks that both produce the same tokens. 1-minute load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after ({os.cpu_count()} CPUs): ratios within about 25% of 1 are noise on a shared machine.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if quick:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hf_generate.md").write_text(text)
    data = {"prompt": prompt_len, "new_tokens": new, "repeats": repeats, "load_avg": load, "rows": rows}
    (RESULTS / "hf_generate.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
