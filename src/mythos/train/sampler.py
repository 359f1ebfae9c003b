"""Training depth: how many loops each sequence of a step runs.

Three distributions, parsed from ``--loops``:

- ``N``                    fixed depth N;
- ``MIN:MAX``              uniform in MIN..MAX;
- ``plognormal:MEAN[:MAX]`` Huginn's heavy tail (Geiping et al., 2025): ``tau ~ N(log(MEAN-1) - s^2/2, s)``,
                           ``n = 1 + Poisson(exp(tau))`` with ``s = 0.5``, so E[n] = MEAN, capped at MAX
                           (default 3 x MEAN). Most steps are cheap; a few are deep.

Depth is drawn **per sequence** (rows of one batch run different depths; the batch runs to its deepest row and
every row keeps its own exit) or **per step** (one depth for the whole global batch). Every draw is a pure
function of (seed, step) over the *global* batch, so all ranks know the same maximum and run the same number of
collective-bearing loops (no FSDP deadlock), and a resumed run draws exactly what the uninterrupted one did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("fixed", "uniform", "plognormal")
PER = ("sequence", "step")
SIGMA = 0.5  # Huginn's log-normal spread


class DepthSpecError(ValueError):
    """A --loops value that does not parse; the message shows the valid forms."""


FORMS = "N, MIN:MAX or plognormal:MEAN[:MAX], e.g. 8, 1:8 or plognormal:6:16"


@dataclass(frozen=True)
class DepthSampler:
    """A training-depth distribution over 1..``high`` (see the module docstring)."""

    kind: str
    low: int
    high: int
    mean: float

    @classmethod
    def parse(cls, text: str | int) -> DepthSampler:
        raw = str(text).strip()
        if raw.lower().startswith("plognormal:"):
            parts = raw.split(":")[1:]
            try:
                mean = float(parts[0])
                high = int(parts[1]) if len(parts) > 1 else max(2, math.ceil(3 * mean))
            except (ValueError, IndexError):
                raise DepthSpecError(f"loops={text!r}: expected {FORMS}") from None
            if len(parts) > 2 or not (mean > 1) or high < mean:
                raise DepthSpecError(f"loops={text!r}: plognormal needs MEAN > 1 and MAX >= MEAN ({FORMS})")
            return cls("plognormal", 1, high, mean)
        lo, sep, hi = raw.partition(":")
        try:
            low = int(lo)
            high = int(hi) if sep else low
        except ValueError:
            raise DepthSpecError(f"loops={text!r}: expected {FORMS}") from None
        if low < 1 or high < low:
            raise DepthSpecError(f"loops={text!r}: needs 1 <= MIN <= MAX ({FORMS})")
        if low == high:
            return cls("fixed", low, high, float(low))
        return cls("uniform", low, high, (low + high) / 2)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` depths (int64) in [low, high]."""
        if self.kind == "fixed":
            return np.full(n, self.low, dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.low, self.high + 1, size=n).astype(np.int64)
        tau = rng.normal(math.log(self.mean - 1) - SIGMA**2 / 2, SIGMA, size=n)
        return np.minimum(1 + rng.poisson(np.exp(tau)), self.high).astype(np.int64)

    def step_depths(self, seed: int, step: int, rows: int, per: str) -> np.ndarray:
        """The depths of every row of a step's global batch; per ``step``: one value repeated."""
        if per not in PER:
            raise DepthSpecError(f"depth_per={per!r}: must be one of {PER}")
        rng = np.random.default_rng([seed, 2, step])
        if per == "step":
            return np.repeat(self.draw(rng, 1), rows)
        return self.draw(rng, rows)


def depth_histogram(depths: np.ndarray) -> dict[str, object]:
    """Telemetry of one step's depths: min/mean/max and the count of rows at each depth 1..max."""
    counts = np.bincount(depths, minlength=int(depths.max()) + 1)[1:]
    return {
        "depth_min": int(depths.min()),
        "depth_mean": float(depths.mean()),
        "depth_max": int(depths.max()),
        "depth_hist": [int(c) for c in counts],
    }
