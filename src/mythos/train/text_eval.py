"""Held-out bits per byte at several test-time depths, plus adaptive per-token exits (``mythos eval`` on text).

Bits per byte = (sum of next-token cross-entropies in nats) / ln 2 / (UTF-8 bytes of the predicted tokens), so
runs with different tokenizers compare. Bytes per token come from the tokenizer's vocabulary (byte-level BPE:
one vocabulary character per byte; special tokens such as EOS count 0 bytes but their loss counts).

Adaptive rows (``--exit kl:0.01``) are a teacher-forced forward with per-token exits: every loop updates the
state of the tokens still running; a token whose criterion fires (``mythos.model.exits``, comparing loop t-1 with
loop t) is frozen at that state for all later loops — later tokens and the next loops' attention read the frozen
state, as a decode engine's cache would — and the Coda reads every token's exit state. Loops used = mean over
tokens of the loops a token ran; loop compute saved = 1 - loops used / the depth cap. ACT models: the fixed-depth
rows use the model's ACT-weighted output; adaptive rows use the raw loop state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mythos.model.exits import ExitCriterion

LN2 = math.log(2.0)


def token_bytes(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (byte-level BPE: one vocabulary character per byte; specials 0)."""
    size = tokenizer.get_vocab_size()
    special = {int(k) for k in tokenizer.get_added_tokens_decoder()}
    out = np.zeros(size, dtype=np.int64)
    for i in range(size):
        tok = tokenizer.id_to_token(i)
        if tok is not None and i not in special:
            out[i] = len(tok)
    return out


def heldout_windows(shards, seq_len: int, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive non-overlapping (input, target) windows from the start of the held-out stream."""
    n = min((len(shards) - 1) // seq_len, max(1, max_tokens // seq_len))
    if n < 1:
        raise ValueError(f"held-out data has {len(shards)} tokens, fewer than one window of {seq_len + 1}")
    tokens = shards.window(0, n * seq_len + 1)
    inputs = tokens[:-1].reshape(n, seq_len)
    targets = tokens[1:].reshape(n, seq_len)
    return inputs, targets


@torch.no_grad()
def fixed_depth_bpb(model, inputs, targets, nbytes: np.ndarray, loops: list[int], batch_size: int = 16):
    """Bits per byte of the held-out windows at each loop count."""
    model.eval()
    device = next(model.parameters()).device
    total_bytes = float(nbytes[targets].sum())
    out = []
    for n in loops:
        nats = 0.0
        for lo in range(0, len(inputs), batch_size):
            x = torch.from_numpy(inputs[lo : lo + batch_size]).to(device)
            y = torch.from_numpy(targets[lo : lo + batch_size]).to(device)
            logits = model(x, n_loops=n).float()
            nats += float(
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
            )
        out.append(nats / LN2 / total_bytes)
    return out


def _readout(model, h: torch.Tensor, rope) -> torch.Tensor:
    for layer in model.coda:
        h = layer(h, rope, None, 0)
    return model.head(model.norm(h)).float()


@torch.no_grad()
def adaptive_forward(model, ids: torch.Tensor, criterion: ExitCriterion, max_loops: int):
    """Logits with per-token exits (see the module docstring) and the loops each token ran, (batch, time)."""
    from mythos.model.rope import rope_tables

    cfg = model.cfg
    x = model.embed(ids)
    rope = rope_tables(cfg.rope_dim, 0, ids.shape[1], cfg.rope_theta, x.device)
    for layer in model.prelude:
        x = layer(x, rope, None, 0)
    e, h = x, x
    done = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    used = torch.zeros(ids.shape, dtype=torch.long, device=ids.device)
    streak = torch.zeros(ids.shape, dtype=torch.long, device=ids.device)
    prev_h = prev_logits = None
    for t in range(max_loops):
        h_new = model.recurrent.step(h, e, rope, t, None, 0)
        h = torch.where(done.unsqueeze(-1), h, h_new)  # an exited token keeps its exit state
        used += (~done).long()
        logits = _readout(model, h, rope) if criterion.needs_logits else None
        if t > 0:
            fired, streak = criterion.step(streak, prev_h, h, prev_logits, logits)
            done = done | fired
        prev_h, prev_logits = h, logits
        if bool(done.all()):
            break
    return _readout(model, h, rope), used


@torch.no_grad()
def adaptive_bpb(
    model, inputs, targets, nbytes, criterion: ExitCriterion, max_loops: int, batch_size: int = 16
):
    """(bits per byte, mean loops used per token) with per-token exits capped at ``max_loops``."""
    model.eval()
    device = next(model.parameters()).device
    nats, loops_sum, count = 0.0, 0, 0
    for lo in range(0, len(inputs), batch_size):
        x = torch.from_numpy(inputs[lo : lo + batch_size]).to(device)
        y = torch.from_numpy(targets[lo : lo + batch_size]).to(device)
        logits, used = adaptive_forward(model, x, criterion, max_loops)
        nats += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))
        loops_sum += int(used.sum())
        count += used.numel()
    return nats / LN2 / float(nbytes[targets].sum()), loops_sum / count


@dataclass
class TextEval:
    """One run's held-out bits per byte per depth (and adaptive rows)."""

    loops: list[int]
    bits_per_byte: list[float]
    tokens: int
    bytes: int
    train_loops: str = ""
    adaptive: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "loops": self.loops,
            "bits_per_byte": [round(v, 5) for v in self.bits_per_byte],
            "tokens": self.tokens,
            "bytes": self.bytes,
            "train_loops": self.train_loops,
            "adaptive": self.adaptive,
        }

    def format(self) -> str:
        lines = [
            f"held-out: {self.tokens} tokens, {self.bytes} bytes (trained with loops {self.train_loops})"
        ]
        lines.append("loops  bits/byte")
        lines += [f"{n:>5d}  {b:9.4f}" for n, b in zip(self.loops, self.bits_per_byte, strict=True)]
        for row in self.adaptive:
            lines.append(
                f"exit {row['exit']} (cap {row['max_loops']}): {row['bits_per_byte']:.4f} bits/byte, "
                f"{row['mean_loops']:.2f} loops/token ({row['compute_saved']:.0%} loop compute saved)"
            )
        return "\n".join(lines)


def evaluate_model(
    model,
    shards,
    nbytes: np.ndarray,
    seq_len: int,
    loops: list[int],
    exits: list[ExitCriterion] = (),
    max_tokens: int = 32768,
    train_loops: str = "",
    batch_size: int = 16,
) -> TextEval:
    inputs, targets = heldout_windows(shards, seq_len, max_tokens)
    bpb = fixed_depth_bpb(model, inputs, targets, nbytes, loops, batch_size)
    result = TextEval(loops, bpb, int(targets.size), int(nbytes[targets].sum()), train_loops)
    cap = max(loops)
    for crit in exits:
        value, used = adaptive_bpb(model, inputs, targets, nbytes, crit, cap, batch_size)
        result.adaptive.append(
            {
                "exit": str(crit),
                "max_loops": cap,
                "bits_per_byte": round(value, 5),
                "mean_loops": round(used, 4),
                "compute_saved": round(1 - used / cap, 4),
            }
        )
    return result


def evaluate_run(
    run: str | Path, loops: list[int] | None = None, exits=(), max_tokens: int = 32768
) -> TextEval:
    """Evaluate a text-trained run (or checkpoint) on its held-out split."""
    import json

    from mythos.model.checkpoint import load_checkpoint

    from .checkpoint import resolve_checkpoint
    from .config import TrainConfig
    from .data import TokenShards, load_tokenizer
    from .sources import HELDOUT_DIR

    ckpt = resolve_checkpoint(run)
    cfg_path = ckpt / "train_config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{ckpt} has no train_config.json: it was not trained by `mythos train`")
    cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    if cfg.task:
        raise ValueError(f"{ckpt} was trained on the synthetic task {cfg.task!r}, not text")
    run_dir = ckpt.parent.parent  # RUN/checkpoints/step_N
    # the recorded path (relative to where training ran), else beside the run (a study's OUT/shards)
    candidates = [Path(cfg.shards)] if cfg.shards else []
    candidates += [run_dir / "shards", run_dir.parent / "shards"]
    shard_dir = next((c for c in candidates if (c / HELDOUT_DIR / "index.json").exists()), candidates[0])
    held = shard_dir / HELDOUT_DIR
    if not (held / "index.json").exists():
        raise FileNotFoundError(
            f"{held} holds no held-out shards: prepare the data with a held-out split (mythos train --heldout 0.05)"
        )
    tok_path = ckpt / "tokenizer.json"  # travels with every text checkpoint
    if not tok_path.exists():
        tok_path = Path(cfg.tokenizer) if cfg.tokenizer else shard_dir / "tokenizer.json"
    nbytes = token_bytes(load_tokenizer(tok_path))
    model = load_checkpoint(ckpt)
    if loops is None:
        top = cfg.loop_range[1]
        loops = sorted({1, 2, 4, top, 2 * top})
    return evaluate_model(
        model, TokenShards.open(held), nbytes, cfg.seq_len, loops, exits, max_tokens, cfg.loops
    )


def plot_text_eval(
    curves: dict[str, TextEval], path: str | Path, title: str = "held-out bits per byte"
) -> Path:
    """One line per run (bits per byte vs test-time loops); adaptive rows as markers at their mean loops."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    span = [
        min(n for ev in curves.values() for n in ev.loops),
        max(n for ev in curves.values() for n in ev.loops),
    ]
    for name, ev in curves.items():
        if len(ev.loops) == 1 and span[0] < span[1]:  # one depth (a dense baseline): a level across the plot
            ax.plot(span, ev.bits_per_byte * 2, linestyle="--", label=name)
            continue
        (line,) = ax.plot(ev.loops, ev.bits_per_byte, marker="o", label=name)
        for row in ev.adaptive:
            ax.scatter([row["mean_loops"]], [row["bits_per_byte"]], marker="*", s=120, color=line.get_color())
            ax.annotate(row["exit"], (row["mean_loops"], row["bits_per_byte"]), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test-time loops (stars: adaptive exits at their mean loops)")
    ax.set_ylabel("bits per byte (held-out)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
