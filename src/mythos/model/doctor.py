"""`mythos doctor`: check a model against the eight Recurrent-Depth Transformer invariants, and look for the
symptoms of a sick checkpoint (A near 1, exploding per-loop hidden norms, dead or collapsed experts).

Each invariant is checked by *observing* the model, not by trusting its config: hooks record what the
injection receives every loop, what mask dtype attention sees in a bf16 forward, which channels the loop
embedding touches, how many loop iterations run while a cache is live. The model handed in is never
modified: checks that must push a module into a corner (saturate A, force every token to halt) work on a
deep copy.

This module holds the checks, the runner and the formatting; `mythos doctor`'s arguments and target loading
live in the CLI layer (``mythos.model.cli.doctor_main``).
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

Severity = Literal["ok", "warning", "violation"]

# Largest model (parameters) the CLI will build from a preset to probe; the giant presets are described by
# `mythos model info` instead.
DEFAULT_MAX_PARAMS = 200_000_000


@dataclass(frozen=True)
class Finding:
    """One check's verdict: which invariant, what was observed, and what to do about it."""

    invariant: str
    severity: Severity
    seen: str
    fix: str = ""


@dataclass
class Probe:
    """The inputs every check shares: a seeded random token batch."""

    input_ids: torch.Tensor
    n_loops: int


def make_probe(cfg: Any, probe_tokens: int = 256, seed: int = 0) -> Probe:
    """Random token ids (batch x time) totalling about ``probe_tokens``; time kept short so checks stay cheap."""
    seq = max(2, min(32, cfg.max_seq_len // 2, probe_tokens))
    batch = max(1, math.ceil(probe_tokens / seq))
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen)
    return Probe(input_ids=ids, n_loops=max(3, cfg.max_loop_iters))


# ---------------------------------------------------------------------------------------------- helpers


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


@contextmanager
def _hooks(*handles: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _bound_arguments(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Name the arguments a module was called with, by its forward's signature."""
    try:
        return dict(inspect.signature(module.forward).bind(*args, **kwargs).arguments)
    except TypeError:
        return {f"arg{i}": a for i, a in enumerate(args)} | dict(kwargs)


def full_depth_forward(model: nn.Module, probe: Probe, **kwargs: Any) -> Any:
    """Forward the probe through every loop: a live cache rules out the ACT early exit, so per-loop
    observations (injected e, loop embedding, hidden norms, expert load) cover all ``n_loops``."""
    ids = probe.input_ids
    cache = model.new_cache(batch_size=ids.shape[0], max_len=ids.shape[1], n_loops=probe.n_loops)
    return model(ids, n_loops=probe.n_loops, cache=cache, **kwargs)


def _is_moe(module: nn.Module) -> bool:
    return hasattr(module, "router") or "moe" in type(module).__name__.lower()


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    blocks = [*model.prelude, model.recurrent.block, *model.coda]
    return [block.attn for block in blocks]


class DoctorResourceError(RuntimeError):
    """The probe did not fit in memory: an error of the run (exit 1), not a finding about the model."""


def is_resource_error(error: BaseException) -> bool:
    """Out of memory on CPU or GPU, however torch phrases it."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "defaultcpuallocator" in text
    )


def _checked(name: str, fix: str) -> Callable[[Callable[..., list[Finding]]], Callable[..., list[Finding]]]:
    """Turn a crash inside a check into a violation of that invariant (a model that cannot be probed is sick)."""

    def wrap(check: Callable[..., list[Finding]]) -> Callable[..., list[Finding]]:
        def run(model: nn.Module, probe: Probe) -> list[Finding]:
            try:
                return check(model, probe)
            except Exception as error:  # noqa: BLE001 - reported, not swallowed
                if is_resource_error(error):
                    raise DoctorResourceError(
                        f"{name}: the probe ran out of memory ({type(error).__name__}: {str(error)[:200]}); "
                        "lower --probe-tokens"
                    ) from error
                return [
                    Finding(
                        name, "violation", f"the check could not run: {type(error).__name__}: {error}", fix
                    )
                ]

        run.__name__ = check.__name__
        run.__doc__ = check.__doc__
        return run

    return wrap


# ---------------------------------------------------------------------------------------------- 0. finite weights

FINITE_FIX = (
    "the checkpoint holds NaN/Inf weights: resume from an earlier checkpoint (training skips non-finite steps "
    "and never checkpoints non-finite weights), and look for the cause in the run's telemetry"
)


def check_finite_weights(model: nn.Module, probe: Probe) -> list[Finding]:
    """Every parameter and buffer finite. Checked first: NaN weights make every forward-based check fail for a
    reason that has nothing to do with its invariant."""
    bad = []
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if tensor.is_floating_point():
            count = int((~torch.isfinite(tensor.detach())).sum())
            if count:
                bad.append(f"{name} ({count}/{tensor.numel()})")
    if bad:
        return [
            Finding(
                "finite_weights",
                "violation",
                f"non-finite values in {len(bad)} tensor(s): {', '.join(bad[:8])}"
                + (" …" if len(bad) > 8 else "")
                + "; the forward-based checks were skipped (they would only echo the NaNs)",
                FINITE_FIX,
            )
        ]
    return [Finding("finite_weights", "ok", "every parameter and buffer is finite")]


# ---------------------------------------------------------------------------------------------- 1. rho(A) < 1

A_NEAR_ONE = 0.99  # memory half-life of ~70 loops: the loop barely forgets its state
SATURATION_VALUES = (-1e4, -100.0, -30.0, -20.0, 0.0, 20.0, 30.0, 100.0, 1e4)
RHO_FIX = (
    "cap A at 1 - 2^-8 (the largest bfloat16 below 1) in every dtype: clamp log_dt + log_A from below at "
    "log(-log(1 - 2^-8)) ~ -5.54 instead of -20, compute A in fp32 and clamp before casting"
)


def _a_bounds(a: torch.Tensor) -> tuple[float, float, bool]:
    a = a.detach().float()
    return a.min().item(), a.max().item(), bool(torch.isfinite(a).all())


@_checked("rho_A", RHO_FIX)
def check_spectral_radius(model: nn.Module, probe: Probe) -> list[Finding]:
    """A's diagonal must lie in [0, 1) as trained, cast to bf16, computed in bf16, and at saturated parameters."""
    injection = model.recurrent.injection
    findings: list[Finding] = []
    problems: list[str] = []
    a32 = injection.get_A()
    lo, hi, finite = _a_bounds(a32)
    if not finite or hi >= 1.0 or lo < 0.0:
        problems.append(f"fp32 A in [{lo:.9f}, {hi:.9f}] (finite={finite})")
    for dtype in (torch.bfloat16, torch.float16):
        name = str(dtype).removeprefix("torch.")
        _, cast_hi, _ = _a_bounds(a32.to(dtype))
        if cast_hi >= 1.0:
            problems.append(f"fp32 A cast to {name} has max {cast_hi} (rounds to 1)")
        low_precision = copy.deepcopy(injection).to(dtype)
        with torch.no_grad():
            _, in_hi, in_finite = _a_bounds(low_precision.get_A())
        if in_hi >= 1.0 or not in_finite:
            problems.append(f"A computed in {name} has max {in_hi} (finite={in_finite})")

    # saturation: drive every injection parameter that shapes A to extreme values, jointly
    saturated = copy.deepcopy(injection).float()
    a_params = [
        (name, p) for name, p in saturated.named_parameters() if p.numel() and _shapes_a(saturated, name, p)
    ]
    worst: tuple[float, str] = (-1.0, "")
    with torch.no_grad():
        for values in itertools.product(SATURATION_VALUES, repeat=len(a_params)):
            for (_, param), value in zip(a_params, values, strict=True):
                param.fill_(value)
            for dtype in (torch.float32, torch.bfloat16):
                a = saturated.get_A().to(dtype)
                _, top, ok = _a_bounds(a)
                if not ok:
                    top = math.inf
                if top > worst[0]:
                    setting = ", ".join(f"{n}={v:g}" for (n, _), v in zip(a_params, values, strict=True))
                    worst = (top, f"{setting} ({str(dtype).removeprefix('torch.')})")
    if worst[0] >= 1.0:
        problems.append(f"saturated parameters reach A = {worst[0]} at {worst[1]}")
    if problems:
        findings.append(Finding("rho_A", "violation", "; ".join(problems), RHO_FIX))
    else:
        findings.append(
            Finding(
                "rho_A",
                "ok",
                f"A in [{lo:.6f}, {hi:.6f}]; < 1 in fp32/bf16/fp16 and saturated (max {worst[0]})",
            )
        )
    if finite and A_NEAR_ONE <= hi < 1.0:
        findings.append(
            Finding(
                "A_near_1",
                "warning",
                f"max A = {hi:.6f} >= {A_NEAR_ONE}: the loop barely forgets; loss spikes at a reproducible step follow",
                "lower the learning rate on the injection's log_A/log_dt, or check that LTIInjection was not modified",
            )
        )
    return findings


def _shapes_a(injection: nn.Module, name: str, param: nn.Parameter) -> bool:
    """True when changing ``param`` changes get_A() (B and other parameters are left alone)."""
    with torch.no_grad():
        before = injection.get_A().clone()
        saved = param.detach().clone()
        param.add_(0.5)
        changed = not torch.equal(before, injection.get_A())
        param.copy_(saved)
    return changed


# ---------------------------------------------------------------------------------------------- 2. e frozen

E_FIX = (
    "compute e once from the Prelude output before the loop and pass the same tensor to the injection at every "
    "iteration; never recompute it from the loop state h"
)


@_checked("e_frozen", E_FIX)
def check_e_frozen(model: nn.Module, probe: Probe) -> list[Finding]:
    """The input injected each loop must be the same values every iteration (and not the loop state)."""
    injection = model.recurrent.injection
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    storages: set[int] = set()

    def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
        bound = _bound_arguments(module, args, kwargs)
        e = bound.get("e", args[1] if len(args) > 1 else None)
        h = bound.get("h", args[0] if args else None)
        storages.add(e.data_ptr())
        seen.append((e.detach().clone(), h.detach().clone() if isinstance(h, torch.Tensor) else None))

    handle = injection.register_forward_pre_hook(record, with_kwargs=True)
    with _hooks(handle), torch.no_grad():
        full_depth_forward(model, probe)
    if len(seen) < 2:
        return [
            Finding(
                "e_frozen",
                "violation",
                f"injection ran {len(seen)} time(s) for n_loops={probe.n_loops}",
                E_FIX,
            )
        ]
    first = seen[0][0]
    drift = [i for i, (e, _) in enumerate(seen) if e.shape != first.shape or not torch.equal(e, first)]
    if drift:
        same_shape = [i for i in drift if seen[i][0].shape == first.shape]
        delta = max(((seen[i][0] - first).abs().max().item() for i in same_shape), default=math.nan)
        return [
            Finding(
                "e_frozen",
                "violation",
                f"the injected e changed at loop(s) {drift} of {len(seen)} (max |delta| {delta:.3g})",
                E_FIX,
            )
        ]
    tracks_h = all(h is not None and h.shape == e.shape and torch.equal(e, h) for e, h in seen[1:])
    if tracks_h:
        return [
            Finding("e_frozen", "violation", "the injected e equals the loop state h at every loop", E_FIX)
        ]
    how = "the same tensor" if len(storages) == 1 else "equal values"
    return [Finding("e_frozen", "ok", f"identical e injected at all {len(seen)} loops ({how})")]


# ---------------------------------------------------------------------------------------------- 3. MoE placement

MOE_FIX = "use dense SwiGLU FFNs in prelude and coda; the MoE belongs only in model.recurrent.block.ffn"


@_checked("moe_only_in_loop", MOE_FIX)
def check_moe_placement(model: nn.Module, probe: Probe) -> list[Finding]:
    """Routed experts only in the looped block; prelude and coda stay dense."""
    misplaced = [
        f"{stage}[{i}].{name or 'self'}"
        for stage in ("prelude", "coda")
        for i, block in enumerate(getattr(model, stage))
        for name, module in block.named_modules()
        if _is_moe(module)
    ]
    problems = []
    if misplaced:
        problems.append(f"MoE modules outside the loop: {', '.join(misplaced)}")
    if not _is_moe(model.recurrent.block.ffn):
        problems.append(f"the looped block's ffn is {type(model.recurrent.block.ffn).__name__}, not an MoE")
    if problems:
        return [Finding("moe_only_in_loop", "violation", "; ".join(problems), MOE_FIX)]
    return [Finding("moe_only_in_loop", "ok", "MoE in recurrent.block.ffn only; prelude/coda dense")]


# ---------------------------------------------------------------------------------------------- 4. tied head

TIED_FIX = (
    "tie the head to the embedding: model.head.weight = model.embed.weight (re-tie after loading weights)"
)


@_checked("tied_head", TIED_FIX)
def check_tied_head(model: nn.Module, probe: Probe) -> list[Finding]:
    """The LM head must be the embedding matrix itself, not a copy that drifts apart in training."""
    head, embed = model.head.weight, model.embed.weight
    if head is embed:
        return [Finding("tied_head", "ok", "head.weight is embed.weight")]
    same_storage = head.shape == embed.shape and head.data_ptr() == embed.data_ptr()
    if same_storage:
        return [Finding("tied_head", "ok", "head.weight shares storage with embed.weight")]
    equal = head.shape == embed.shape and torch.equal(head.detach(), embed.detach())
    seen = "head.weight is a separate parameter" + (
        " (equal values now, will drift)" if equal else " with other values"
    )
    return [Finding("tied_head", "violation", seen, TIED_FIX)]


# ---------------------------------------------------------------------------------------------- 5. mask dtype

MASK_FIX = (
    "build the causal mask in the activation dtype (or pass a bool mask / is_causal=True to "
    "scaled_dot_product_attention); an fp32 additive mask breaks or silently upcasts a bf16 forward"
)


@contextmanager
def _record_sdpa(calls: list[tuple[torch.dtype, torch.dtype | None]]) -> Iterator[None]:
    """Record (query dtype, mask dtype) of every scaled_dot_product_attention call, wherever it was imported."""
    original = F.scaled_dot_product_attention

    def recording(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None, *a: Any, **kw: Any
    ):
        calls.append((query.dtype, attn_mask.dtype if isinstance(attn_mask, torch.Tensor) else None))
        return original(query, key, value, attn_mask, *a, **kw)

    patched = [(F, "scaled_dot_product_attention")]
    patched += [
        (module, "scaled_dot_product_attention")
        for name, module in list(sys.modules.items())
        if name.startswith("mythos.") and getattr(module, "scaled_dot_product_attention", None) is original
    ]
    for owner, attr in patched:
        setattr(owner, attr, recording)
    try:
        yield
    finally:
        for owner, attr in patched:
            setattr(owner, attr, original)


@_checked("mask_dtype", MASK_FIX)
def check_mask_dtype(model: nn.Module, probe: Probe) -> list[Finding]:
    """Run the model in bf16 and check every additive attention mask has the activations' dtype."""
    half = copy.deepcopy(model).to(torch.bfloat16).eval()
    module_masks: list[tuple[str, torch.dtype, torch.dtype]] = []

    def watch(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            bound = _bound_arguments(module, args, kwargs)
            x = next(
                (v for v in bound.values() if isinstance(v, torch.Tensor) and v.is_floating_point()), None
            )
            for key in ("mask", "attn_mask"):
                mask = bound.get(key)
                if isinstance(mask, torch.Tensor) and mask.is_floating_point() and x is not None:
                    module_masks.append((name, x.dtype, mask.dtype))

        return hook

    names = [f"prelude[{i}]" for i in range(len(half.prelude))] + ["recurrent.block"]
    names += [f"coda[{i}]" for i in range(len(half.coda))]
    handles = [
        attn.register_forward_pre_hook(watch(name), with_kwargs=True)
        for name, attn in zip(names, _attention_modules(half), strict=True)
    ]
    sdpa_calls: list[tuple[torch.dtype, torch.dtype | None]] = []
    errors: list[str] = []
    ids = probe.input_ids[:2]
    length = ids.shape[1]
    # cached chunks that take every masking path: a first chunk (causal), a long chunk over cached keys
    # (explicit mask), then one-token decode steps (no mask; the latent-space path for MLA)
    bounds = sorted({0, max(1, length // 4), max(1, length - 2), length - 1, length})
    with _hooks(*handles), _record_sdpa(sdpa_calls), torch.no_grad():
        try:
            outputs = [_logits(half(ids, n_loops=probe.n_loops))]
            cache = half.new_cache(batch_size=ids.shape[0], max_len=length, n_loops=probe.n_loops)
            for lo, hi in itertools.pairwise(bounds):
                outputs.append(_logits(half(ids[:, lo:hi], n_loops=probe.n_loops, cache=cache)))
            if not all(torch.isfinite(out.float()).all() for out in outputs):
                errors.append("the bf16 forward produced non-finite logits")
        except Exception as error:  # noqa: BLE001 - a bf16 forward that crashes is the finding
            errors.append(f"the bf16 forward failed: {type(error).__name__}: {str(error).splitlines()[0]}")
    problems = [f"{name}: activations {x} but mask {m}" for name, x, m in module_masks if x != m]
    problems += sorted(
        {
            f"scaled_dot_product_attention: query {q} but float mask {m}"
            for q, m in sdpa_calls
            if m not in (None, q, torch.bool)
        }
    )
    problems += errors
    if problems:
        return [Finding("mask_dtype", "violation", "; ".join(problems), MASK_FIX)]
    kinds = sorted({str(m).removeprefix("torch.") for _, m in sdpa_calls if m is not None}) or ["none"]
    seen = f"bf16 forward and chunked prefill clean ({len(sdpa_calls)} attention calls; explicit masks: {', '.join(kinds)})"
    return [Finding("mask_dtype", "ok", seen)]


# ---------------------------------------------------------------------------------------------- 6. loop embedding

LOOP_EMB_FIX = (
    "add the loop-index embedding to exactly the first dim // 8 channels of h (cfg.loop_dim = dim // 8)"
)


@_checked("loop_embedding_width", LOOP_EMB_FIX)
def check_loop_embedding(model: nn.Module, probe: Probe) -> list[Finding]:
    """Observe which channels the loop embedding changes across the loops of a real forward."""
    cfg = model.cfg
    expected = cfg.dim // 8
    changed = torch.zeros(cfg.dim, dtype=torch.bool)
    calls = 0

    def record(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        nonlocal calls, changed
        bound = _bound_arguments(module, args, kwargs)
        h = next(v for v in bound.values() if isinstance(v, torch.Tensor) and v.shape[-1] == cfg.dim)
        delta = (output - h).detach().reshape(-1, cfg.dim)
        changed |= (delta != 0).any(dim=0)
        calls += 1

    handle = model.recurrent.loop_embedding.register_forward_hook(record, with_kwargs=True)
    with _hooks(handle), torch.no_grad():
        full_depth_forward(model, probe)
    width = int(changed.sum())
    channels = changed.nonzero().flatten().tolist()
    contiguous_prefix = channels == list(range(width))
    problems = []
    if cfg.loop_dim != expected:
        disabled = " (the loop embedding is disabled)" if cfg.loop_dim == 0 else ""
        problems.append(f"cfg.loop_dim={cfg.loop_dim}{disabled}, dim // 8 = {expected}")
    if calls == 0:
        problems.append("the loop embedding never ran")
    elif width == 0:
        problems.append(f"it changed no channel over {calls} loops; expected the first {expected}")
    elif width != expected or not contiguous_prefix:
        problems.append(
            f"it changed {width} channels ({channels[0]}..{channels[-1]}) over {calls} loops; "
            f"expected the first {expected}"
        )
    if problems:
        return [Finding("loop_embedding_width", "violation", "; ".join(problems), LOOP_EMB_FIX)]
    return [
        Finding(
            "loop_embedding_width",
            "ok",
            f"first {width} of {cfg.dim} channels (= dim // 8) over {calls} loops",
        )
    ]


# ---------------------------------------------------------------------------------------------- 7/8. ACT and cache

ACT_FIX = (
    "gate each loop's ACT weight and the cumulative-probability update by still_running = ~halted, so a "
    "position contributes once, on the loop where it halts, and nothing afterwards"
)
CACHE_FIX = (
    "never leave the loop early while a KV cache is live: every (layer, loop) cache slot must be written on every "
    "forward, or later decode steps attend to missing keys; only break early when cache is None"
)
HALT_PROBABILITY_GAP = (
    0.5  # forced p sits halfway between act_threshold and 1, where an ungated remainder leaks
)


def _force_halting(model: nn.Module, probability: float) -> None:
    """Make the ACT unit report ``probability`` for every position (on this instance only)."""
    act = model.recurrent.act
    original = act.forward

    def constant(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        return torch.full_like(out, probability)

    act.forward = constant  # type: ignore[method-assign]


def _count_calls(module: nn.Module, counter: list[int]) -> Any:
    return module.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))


def _cached_forward(
    model: nn.Module, ids: torch.Tensor, n_loops: int, max_len: int
) -> tuple[torch.Tensor, Any]:
    cache = model.new_cache(batch_size=ids.shape[0], max_len=max_len, n_loops=n_loops)
    return _logits(model(ids, n_loops=n_loops, cache=cache)), cache


def _halting_twin(model: nn.Module) -> tuple[nn.Module, float]:
    """A deep copy in which every position halts at the first loop with p in (threshold, 1)."""
    twin = copy.deepcopy(model).float().eval()
    threshold = float(model.cfg.act_threshold)
    probability = threshold + (1.0 - threshold) * HALT_PROBABILITY_GAP
    if probability >= 1.0 or probability <= threshold:  # threshold == 1: halt "exactly" instead
        probability = 1.0
    _force_halting(twin, probability)
    return twin, probability


@_checked("act_still_running", ACT_FIX)
def check_act_gating(model: nn.Module, probe: Probe) -> list[Finding]:
    """Once every position has halted, more loops must not change the output (nothing leaks past halting)."""
    if not getattr(model.cfg, "act", True):
        return [
            Finding("act_still_running", "ok", "ACT halting is off (cfg.act=False): output is the last loop")
        ]
    twin, probability = _halting_twin(model)
    ids = probe.input_ids[:2, :8]
    deep = max(probe.n_loops, 3)
    with torch.no_grad():
        shallow_logits, _ = _cached_forward(twin, ids, 1, ids.shape[1])
        deep_logits, _ = _cached_forward(twin, ids, deep, ids.shape[1])
    gap = (deep_logits - shallow_logits).abs().max().item()
    scale = shallow_logits.abs().max().item() or 1.0
    if gap > 1e-4 * scale:
        return [
            Finding(
                "act_still_running",
                "violation",
                f"with every position halted at loop 1 (p={probability:.4f} >= act_threshold={model.cfg.act_threshold}),"
                f" running {deep} loops instead of 1 changed the logits by {gap:.3g}: halted positions keep contributing",
                ACT_FIX,
            )
        ]
    return [
        Finding(
            "act_still_running",
            "ok",
            f"halted positions contribute nothing after halting (1 vs {deep} loops: {gap:.1g})",
        )
    ]


@_checked("cache_no_early_exit", CACHE_FIX)
def check_cache_no_early_exit(model: nn.Module, probe: Probe) -> list[Finding]:
    """With a live cache, every loop must run on prefill and decode even when every position has halted."""
    twin, _ = _halting_twin(model)
    n_loops = max(probe.n_loops, 2)
    ids = probe.input_ids[:2, :6]
    calls = [0]
    handle = _count_calls(twin.recurrent.block, calls)
    runs: list[tuple[str, int]] = []
    with _hooks(handle), torch.no_grad():
        cache = twin.new_cache(batch_size=ids.shape[0], max_len=ids.shape[1], n_loops=n_loops)
        twin(ids[:, :-1], n_loops=n_loops, cache=cache)
        runs.append(("prefill", calls[0]))
        calls[0] = 0
        decoded = _logits(twin(ids[:, -1:], n_loops=n_loops, cache=cache))
        runs.append(("decode", calls[0]))
        full = _logits(twin(ids, n_loops=n_loops))
    short = [f"{stage} ran {count} of {n_loops} loops" for stage, count in runs if count != n_loops]
    if short:
        return [
            Finding(
                "cache_no_early_exit",
                "violation",
                "with a live cache and every position halted: " + "; ".join(short),
                CACHE_FIX,
            )
        ]
    gap = (decoded[:, -1] - full[:, -1]).abs().max().item()
    scale = full.abs().max().item() or 1.0
    if gap > 1e-3 * scale:
        return [
            Finding(
                "cache_no_early_exit",
                "violation",
                f"all {n_loops} loops ran, but cached decode differs from the full forward by {gap:.3g}",
                CACHE_FIX,
            )
        ]
    return [
        Finding(
            "cache_no_early_exit", "ok", f"all {n_loops} loops ran on prefill and decode with a live cache"
        )
    ]


# ---------------------------------------------------------------------------------------------- symptoms

NORM_GROWTH_LIMIT = 10.0  # last-loop / first-loop hidden norm beyond which the loop is exploding
DEAD_EXPERT_MIN_EXPECTED = (
    8.0  # only call an expert dead when a uniform router would send it this many tokens
)
COLLAPSE_FRACTION = 0.9  # one expert chosen by more than this fraction of tokens


@_checked(
    "loop_stability", "check rho(A), lower the learning rate, and compare hidden norms at trained depth"
)
def check_hidden_norms(model: nn.Module, probe: Probe) -> list[Finding]:
    """Per-loop mean hidden-state norm on the probe: finite, and not growing geometrically with depth."""
    with torch.no_grad():
        out = full_depth_forward(model, probe, return_aux=True)
    norms = out.aux.hidden_norms.detach().float().flatten()
    shown = ", ".join(f"{v:.3g}" for v in norms.tolist())
    if not torch.isfinite(norms).all() or not torch.isfinite(_logits(out)).all():
        return [
            Finding(
                "loop_stability",
                "violation",
                f"non-finite hidden state or logits on the probe (per-loop norms: {shown})",
                "find the loop where it turns inf/nan; check rho(A) and the learning rate",
            )
        ]
    growth = (norms[-1] / norms[0].clamp_min(1e-12)).item() if norms.numel() > 1 else 1.0
    if growth > NORM_GROWTH_LIMIT:
        return [
            Finding(
                "loop_stability",
                "warning",
                f"hidden norm grows {growth:.1f}x over {norms.numel()} loops ({shown}): the residual stream is exploding",
                "check max(A) and the injection's B; lower the learning rate; consider fewer training loops",
            )
        ]
    return [Finding("loop_stability", "ok", f"per-loop hidden norms {shown} (x{growth:.2f} first to last)")]


@_checked(
    "expert_health",
    "rebalance the router: enable the aux-loss-free bias update (update_router_bias) each step",
)
def check_experts(model: nn.Module, probe: Probe) -> list[Finding]:
    """Router statistics on the probe: no expert unused when it should see tokens, none taking most of them."""
    cfg = model.cfg
    with torch.no_grad():
        out = full_depth_forward(model, probe, return_aux=True)
    load = out.aux.expert_load.detach().float().flatten()
    n_tokens = probe.input_ids.numel() * probe.n_loops
    expected = n_tokens * cfg.n_experts_per_tok / cfg.n_experts
    share = load / load.sum().clamp_min(1e-12)
    untrained = not bool(model.recurrent.block.ffn.router.bias.abs().sum())
    note = " (the router bias was never updated: usual before training)" if untrained else ""
    findings = []
    dead = (share == 0).nonzero().flatten().tolist()
    if dead and expected >= DEAD_EXPERT_MIN_EXPECTED:
        findings.append(
            Finding(
                "expert_health",
                "warning",
                f"dead experts {dead}: no routed tokens out of {n_tokens} token-loops "
                f"(uniform routing would give each ~{expected:.0f}){note}",
                "call model.update_router_bias(aux.expert_load) every training step (raise router_bias_rate if slow)",
            )
        )
    # each token picks top_k distinct experts, so a share of 1/top_k means every token chose that expert
    top_fraction = share.max().item() * cfg.n_experts_per_tok
    if cfg.n_experts > cfg.n_experts_per_tok and top_fraction > COLLAPSE_FRACTION:
        findings.append(
            Finding(
                "expert_health",
                "warning",
                f"collapsed routing: expert {int(share.argmax())} is chosen by {top_fraction:.0%} of tokens{note}",
                "check the router-bias update runs each step; lower the router's learning rate",
            )
        )
    if findings:
        return findings
    return [
        Finding(
            "expert_health",
            "ok",
            f"expert load share min {share.min().item():.3f} / max {share.max().item():.3f} "
            f"(uniform {1 / cfg.n_experts:.3f})",
        )
    ]


DEPTH_COLLAPSE_FRACTION = 0.5  # mean ACT depth below this share of the loops asked for is a collapse
DEPTH_FIX = (
    "train with ACT off and random depth, the text recipe (`mythos train --set act=false --loops 1:N`, depth "
    "drawn per sequence), then pick the depth at test time or exit per token (`mythos eval --exit kl:0.01`); "
    "with ACT kept on, start the halting bias at logit(1/N) (fresh models do: ACTHalting) and backprop "
    "through the loops where halting is counted"
)


@_checked("depth_collapse", DEPTH_FIX)
def check_depth_collapse(model: nn.Module, probe: Probe) -> list[Finding]:
    """ACT's mean depth on a real forward (no cache, early exit allowed) against the loops asked for."""
    cfg = model.cfg
    if not cfg.act:
        return [Finding("depth_collapse", "ok", "ACT is off: every token runs the loops it is given")]
    asked = max(cfg.max_loop_iters, probe.n_loops)
    with torch.no_grad():
        out = model(probe.input_ids, n_loops=asked, return_aux=True)
    depth = out.aux.mean_depth
    if asked >= 4 and depth < DEPTH_COLLAPSE_FRACTION * asked:
        return [
            Finding(
                "depth_collapse",
                "warning",
                f"depth collapse: ACT halts after {depth:.2f} loops on average of the {asked} asked for "
                f"(halting bias {float(model.recurrent.act.halt.bias.detach().float().mean()):+.2f})",
                DEPTH_FIX,
            )
        ]
    return [Finding("depth_collapse", "ok", f"ACT uses {depth:.2f} of {asked} loops on average")]


# ---------------------------------------------------------------------------------------------- runner

CHECKS: tuple[Callable[[nn.Module, Probe], list[Finding]], ...] = (
    check_finite_weights,
    check_spectral_radius,
    check_e_frozen,
    check_moe_placement,
    check_tied_head,
    check_mask_dtype,
    check_loop_embedding,
    check_act_gating,
    check_cache_no_early_exit,
    check_hidden_norms,
    check_experts,
    check_depth_collapse,
)


def run_doctor(
    model: nn.Module, probe_tokens: int = 256, seed: int = 0, allow: tuple[str, ...] | list[str] = ()
) -> list[Finding]:
    """Every invariant and symptom check on ``model`` (left unchanged), in order; one or more findings each.

    ``allow`` names invariants the model breaks on purpose (e.g. the demo's ``loop_dim=0``): their violations
    are reported as warnings, marked as allowed, instead of failing the run.
    """
    unknown = sorted(set(allow) - set(INVARIANTS))
    if unknown:
        raise ValueError(f"allow={unknown} names no invariant; valid: {', '.join(INVARIANTS)}")
    try:
        probe = make_probe(model.cfg, probe_tokens, seed)
    except Exception as error:  # noqa: BLE001 - only resource errors are translated
        if is_resource_error(error):
            raise DoctorResourceError(
                f"a probe of {probe_tokens} tokens does not fit in memory; lower --probe-tokens"
            ) from error
        raise
    was_training = model.training
    model.eval()
    try:
        findings = check_finite_weights(model, probe)
        checks = [c for c in CHECKS if c is not check_finite_weights]
        if findings[0].severity != "ok":
            checks = [c for c in checks if c in STRUCTURAL_CHECKS]
        findings += [finding for check in checks for finding in check(model, probe)]
    finally:
        model.train(was_training)
    return [
        Finding(f.invariant, "warning", f"(allowed) {f.seen}", f.fix)
        if f.severity == "violation" and f.invariant in allow
        else f
        for f in findings
    ]


STRUCTURAL_CHECKS = (check_moe_placement, check_tied_head)
"""Checks that read the module tree only: still meaningful when the weights are not finite."""

INVARIANTS = (
    "rho_A",
    "e_frozen",
    "moe_only_in_loop",
    "tied_head",
    "mask_dtype",
    "loop_embedding_width",
    "act_still_running",
    "cache_no_early_exit",
    "loop_stability",
)
"""Names a finding can carry that may be a violation (``--allow`` accepts these)."""


def has_violation(findings: list[Finding], strict: bool = False) -> bool:
    bad = {"violation", "warning"} if strict else {"violation"}
    return any(f.severity in bad for f in findings)


def format_findings(findings: list[Finding]) -> str:
    width = max(len(f.invariant) for f in findings)
    lines = []
    for f in findings:
        tag = {"ok": "ok", "warning": "WARNING", "violation": "VIOLATION"}[f.severity]
        lines.append(f"  {tag:<10} {f.invariant:<{width}}  {f.seen}")
        if f.severity != "ok" and f.fix:
            lines.append(f"  {'':<10} {'':<{width}}  fix: {f.fix}")
    counts = {s: sum(f.severity == s for f in findings) for s in ("ok", "warning", "violation")}
    lines.append(
        f"{len(findings)} findings: {counts['ok']} ok, {counts['warning']} warnings, {counts['violation']} violations"
    )
    return "\n".join(lines)
