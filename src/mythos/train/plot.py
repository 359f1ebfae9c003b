"""PNG charts of a run's telemetry and of an accuracy grid (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mythos.fsutil import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return path


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            steps.append(r["step"])
            values.append(v)
    return np.array(steps), np.array(values)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw training curves (loss, lr, grad norm, max A, throughput, loops) and loop/expert diagnostics."""
    from .telemetry import read_telemetry

    records = read_telemetry(run_dir)
    if not records:
        raise ValueError(f"{run_dir}: telemetry is empty, nothing to plot")
    out = Path(out_dir) if out_dir else Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    written = []

    panels = [
        ("loss", "loss", True),
        ("lr", "learning rate", False),
        ("grad_norm", "grad norm (pre-clip)", True),
        ("max_A", "max A (must stay < 1)", False),
        ("tokens_per_s", "tokens / s", False),
        ("n_loops", "loops this step", False),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (key, title, log_scale) in zip(axes.flat, panels, strict=True):
        steps, values = _series(records, key)
        if len(steps):
            ax.plot(steps, values, lw=1)
            if log_scale and (values > 0).all():
                ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"training run {Path(run_dir).name}")
    fig.tight_layout()
    written.append(_save(fig, out / "training.png"))
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    last_by_depth: dict[int, list[float]] = {}
    for r in records:
        norms = r.get("hidden_norms") or []
        if norms:
            last_by_depth[len(norms)] = norms
    for depth in sorted(last_by_depth):
        left.plot(range(1, depth + 1), last_by_depth[depth], marker="o", ms=3, label=f"{depth} loops")
    left.set_title("hidden-state norm after each loop (latest step of each depth)")
    left.set_xlabel("loop")
    left.grid(alpha=0.3)
    if last_by_depth:
        left.legend(fontsize=7)
    loads = [r["expert_load"] for r in records if r.get("expert_load")]
    if loads:
        matrix = np.array(loads).T
        im = right.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis")
        fig.colorbar(im, ax=right, label="fraction of routed tokens")
        right.set_yticks(range(matrix.shape[0]))
    right.set_title("expert load over steps")
    right.set_xlabel("step")
    right.set_ylabel("expert")
    written.append(_save(fig, out / "loops_and_experts.png"))
    plt.close(fig)
    return written


def plot_grid(grid, path: str | Path) -> Path:
    """Heatmap (chain length × loops) plus accuracy-vs-loops curves, one per chain length."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    acc = np.asarray(grid.accuracy) * 100
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    im = left.imshow(acc, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=100)
    left.set_xticks(range(len(grid.loops)), [str(n) for n in grid.loops])
    left.set_yticks(
        range(len(grid.lengths)), [f"{n}{'*' if n > grid.train_hops else ''}" for n in grid.lengths]
    )
    left.set_xlabel("loops at test time")
    left.set_ylabel("chain length (* = longer than any seen in training)")
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            left.text(
                j,
                i,
                f"{acc[i, j]:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if acc[i, j] > 60 else "white",
            )
    left.axhline(
        grid.lengths.index(grid.train_hops) + 0.5 if grid.train_hops in grid.lengths else -0.5,
        color="cyan",
        lw=1.5,
        ls="--",
    )
    fig.colorbar(im, ax=left, label="% correct")
    left.set_title("accuracy: chain length × loop count")
    cmap = plt.get_cmap("viridis")
    for i, length in enumerate(grid.lengths):
        style = "--" if length > grid.train_hops else "-"
        right.plot(
            grid.loops,
            acc[i],
            style,
            marker="o",
            ms=3,
            color=cmap(i / max(1, len(grid.lengths) - 1)),
            label=f"{length}{'*' if length > grid.train_hops else ''}",
        )
    right.axvspan(grid.train_loops[0], grid.train_loops[1], color="grey", alpha=0.12, label="trained loops")
    right.set_xlabel("loops at test time")
    right.set_ylabel("% correct")
    right.set_ylim(-2, 102)
    right.grid(alpha=0.3)
    right.legend(title="chain length", fontsize=7, ncol=2)
    right.set_title("more loops solve longer chains")
    return _save(fig, path)
