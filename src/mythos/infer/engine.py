"""The decode engine: prefill and decode a looped model over a static KV cache, with adaptive depth.

One forward runs Prelude → recurrent loop → Coda for a block of slots ``[slot0, slot0 + B)`` and a padded
chunk of tokens per slot. Each slot has its own position, so prompts of different lengths batch together,
and slots can be refilled while others decode (continuous batching).

Two ways to run the loop:

- **fixed depth** (default): every token runs every loop up to its row's ``n_loops``; ACT only weights the
  outputs. No host syncs, no value-dependent branches: ``torch.compile`` can capture the decode step.
- **adaptive depth** (``adaptive=True``): once a token's ACT mass crosses the threshold it leaves the loop —
  later loops gather only the tokens still running, so halted tokens cost nothing. Its output is exactly
  what fixed depth gives (a halted token's ACT weight is zero from then on). Policy for later tokens, which
  may still attend at deeper depths: **a halted token's last computed cache entry is copied into every
  deeper depth** (with the ``shared`` cache policy it is already there). This costs one host sync per loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._dynamo.exc import FailOnRecompileLimitHit

from mythos.infer.cache import StaticKVCache
from mythos.infer.kernels import (
    StepContext,
    gqa_attend,
    halt_prob,
    linear,
    lora_delta,
    mla_attend,
    moe,
    swiglu,
)
from mythos.infer.view import (
    BlockWeights,
    DecodeView,
    MLAWeights,
    rms_norm,
    view_from_model,
    with_weight_dtype,
)


@dataclass
class DepthStats:
    """Compute accounting for the recurrent loop: token-loops run vs. what fixed depth would run."""

    token_loops_run: int = 0
    token_loops_full: int = 0
    per_loop_tokens: list[int] = field(default_factory=list)

    @property
    def saved_fraction(self) -> float:
        return 0.0 if not self.token_loops_full else 1.0 - self.token_loops_run / self.token_loops_full

    def add(self, other: DepthStats) -> None:
        self.token_loops_run += other.token_loops_run
        self.token_loops_full += other.token_loops_full


def _bucket(n: int, step: int = 64) -> int:
    """Eager steps read keys up to the longest live sequence, rounded up to a multiple of ``step``."""
    return -(-n // step) * step


class Engine:
    """Runs a :class:`DecodeView` over a :class:`StaticKVCache`."""

    def __init__(
        self,
        view: DecodeView,
        slots: int = 1,
        max_len: int | None = None,
        n_loops: int | None = None,
        cache_policy: str = "per-loop",
        adaptive: bool = False,
        prefill_chunk: int = 512,
        device: torch.device | str = "cpu",
        act_threshold: float | None = None,
        weight_dtype: torch.dtype | None = None,
        cache_dtype: torch.dtype | None = None,
    ) -> None:
        if act_threshold is not None:  # trade accuracy for depth at inference: lower halts sooner
            if not 0.0 < act_threshold <= 1.0:
                raise ValueError(f"act_threshold={act_threshold} is invalid: use a number in (0, 1]")
            view = replace(view, act=replace(view.act, threshold=act_threshold))
        if weight_dtype is not None and weight_dtype != view.dtype:  # weight-only low precision (see view.py)
            view = with_weight_dtype(view, weight_dtype)
        self.view = view
        self.max_loops = n_loops or view.max_loop_iters
        self.cache = StaticKVCache.allocate(
            view,
            slots,
            max_len or view.max_seq_len,
            self.max_loops,
            cache_policy,
            dtype=cache_dtype,
            device=device,
        )
        self.adaptive = adaptive
        self.prefill_chunk = prefill_chunk
        self.device = torch.device(device)
        self.stats = DepthStats()
        self._freqs = view.rope_freqs.to(device)
        self._cos, self._sin = self._freqs.real.contiguous(), self._freqs.imag.contiguous()
        self._loop_bias = [view.loop_bias(t).to(device) for t in range(self.max_loops)]
        self._decode_fn = self._decode_step
        self._step_inputs: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}  # per compiled variant
        self._replays: dict[tuple, tuple[Callable, tuple]] = {}  # variant -> (compiled graph, its inputs)
        self._capturing: tuple | None = None
        self._warned_limit = False
        self._compiled = False

    @classmethod
    def from_model(cls, model, **kwargs) -> Engine:
        """An engine over a ``mythos.model.Mythos`` (weights borrowed; see :func:`view_from_model`)."""
        return cls(view_from_model(model), device=model.embed.weight.device, **kwargs)

    # ------------------------------------------------------------------ public API

    @property
    def max_len(self) -> int:
        return self.cache.max_len

    def compile(self, **kwargs) -> None:
        """Capture the fixed-depth decode step — loop, head and position update — with ``torch.compile``.

        Prompts stay eager. Compiled steps read the whole cache (masked), gpt-fast style, so every step has
        the same shapes and one graph serves a whole generation; eager steps read only up to the longest
        live sequence. On CPU the graph gets a C++ wrapper (``cpp_wrapper``): a batch-1 step runs ~100
        small kernels, and calling them from C++ rather than Python saves about a tenth of the step.

        Each graph is then *replayed* (see :meth:`decode`): its inputs — weights, cache, and per-variant
        token/loop buffers that each step refills — are the same tensors at every step, so the engine calls
        the compiled graph directly with them, skipping dynamo's per-call frame handling and guard checks
        (~0.1 ms of a ~0.5 ms batch-1 step on this CPU). A replay trusts that those tensors are still the
        step's inputs: the engine never replaces its view or cache, and neither should its users (call
        ``compile()`` again after doing so). Pass ``backend=`` to opt out.
        """
        kwargs.setdefault("fullgraph", True)
        # one graph per (batch width, depth, uniform) in use; past the limit a step runs eagerly (see decode)
        kwargs.setdefault("recompile_limit", 64)
        options = dict(kwargs.pop("options", None) or {})
        if kwargs.get("mode") and "backend" not in kwargs:  # our backend takes the mode's inductor options
            options = {**torch._inductor.list_mode_options(kwargs.pop("mode")), **options}
        if self.device.type == "cpu":
            options.setdefault("cpp_wrapper", True)
            # compute a value read by several kernels once, not again inside each consumer's loop: a norm
            # fused into a projection was re-evaluated for every weight row (batch-1 step at prompt 128
            # 0.37-0.40 vs 0.41-0.43 ms; 4 rows 1.00 vs 1.27 ms; 16 rows unchanged)
            options.setdefault("realize_reads_threshold", 1)
        options.setdefault("size_asserts", False)  # every input's shape is fixed by the engine and guarded
        self._replays.clear()  # graphs of an earlier compile() must not outlive it
        if "backend" in kwargs:  # the caller's backend: no replay (inductor still gets the options)
            backend = kwargs.pop("backend")
            self._decode_fn = torch.compile(
                self._decode_step,
                dynamic=False,
                backend=backend,
                options=options if backend == "inductor" else None,
                **kwargs,
            )
        else:
            replayable = kwargs["fullgraph"]  # one graph per step: what the backend sees is the whole step
            self._decode_fn = torch.compile(
                self._decode_step,
                dynamic=False,
                backend=self._inductor_capturing(options, replayable),
                **kwargs,
            )
        self._compiled = True

    def _inductor_capturing(self, options: dict, replayable: bool):
        """A torch.compile backend: inductor with ``options``, remembering each graph and its inputs for
        replay under the variant being compiled (``self._capturing``)."""
        from torch._inductor.compile_fx import compile_fx

        def backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
            compiled = compile_fx(gm, example_inputs, config_patches=options)
            key, static = self._capturing or (None, ())
            outputs = gm.graph.output_node().args[0]
            inputs = {id(t) for t in example_inputs}
            if (
                replayable
                and key is not None
                and len(outputs) == 1
                and all(id(t) in inputs for t in static)
                and all(isinstance(t, Tensor) for t in example_inputs)
            ):
                self._replays[key] = (compiled, tuple(example_inputs))
            return compiled

        return backend

    def decode_width(self, n: int) -> int:
        """Rows to decode for ``n`` live slots: ``n`` eagerly; the next power of two (capped at the slot
        count) when compiled, so a server whose batch size moves around compiles a handful of graphs."""
        if not self._compiled:
            return n
        return min(1 << max(n - 1, 0).bit_length(), self.cache.slots)

    def warm_up(self) -> list[int]:
        """Compile the decode graph of every width :meth:`decode_width` can return, at full depth, so a server
        never stalls on a first compile mid-request; leaves every slot empty. Returns the widths compiled."""
        widths = sorted({self.decode_width(n) for n in range(1, self.cache.slots + 1)})
        if self._compiled:
            for w in widths:
                self.prefill(0, [[0]] * w)
                self.decode(0, torch.zeros(w, dtype=torch.long))
            self.reset()
        return widths

    def reset(self, slot: int | None = None) -> None:
        for s in range(self.cache.slots) if slot is None else [slot]:
            self.cache.reset_slot(s)

    @torch.inference_mode()
    def prefill(
        self, slot0: int, prompts: list[list[int]], n_loops: list[int] | None = None, all_logits: bool = False
    ) -> Tensor:
        """Append ``prompts`` (one per slot from ``slot0``) in chunks; returns last-token logits (B, V).

        With ``all_logits`` returns (B, T_max, V) for every prompt position (padding rows are junk).
        """
        B = len(prompts)
        if any(not p for p in prompts):
            raise ValueError("prompts must each hold at least one token")
        outs = []
        longest = max(len(p) for p in prompts)
        for start in range(0, longest, self.prefill_chunk):
            chunk = [p[start : start + self.prefill_chunk] for p in prompts]
            lens = [len(c) for c in chunk]
            width = max(lens)
            tokens = torch.zeros(B, width, dtype=torch.long)
            for i, c in enumerate(chunk):
                tokens[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            logits = self.step(slot0, tokens, lens, n_loops, all_logits=all_logits)
            outs.append((logits, lens))
        if all_logits:
            return torch.cat([o for o, _ in outs], dim=1)
        # the last chunk that holds a token of each prompt gives that prompt's last logits
        last = torch.empty(B, self.view.vocab_size, dtype=outs[0][0].dtype)
        for logits, lens in outs:
            for i, n in enumerate(lens):
                if n:
                    last[i] = logits[i]
        return last

    @torch.inference_mode()
    def decode(self, slot0: int, tokens: Tensor, n_loops: list[int] | None = None) -> Tensor:
        """One new token per slot in ``[slot0, slot0 + B)``; returns next-token logits (B, V)."""
        B = tokens.shape[0]
        if not self._compiled or self.adaptive:
            return self.step(slot0, tokens.view(B, 1), [1] * B, n_loops)
        loops = self._check(slot0, [1] * B, n_loops)
        key = (slot0, B, max(loops), min(loops) == max(loops))
        if key not in self._step_inputs:  # refilled at every step: the same tensors feed every replay
            self._step_inputs[key] = (
                torch.zeros(B, 1, dtype=torch.long, device=self.device),
                torch.ones(B, dtype=torch.long, device=self.device),
                torch.zeros(B, dtype=torch.long, device=self.device),
            )
        step_tokens, ones, step_loops = self._step_inputs[key]
        step_tokens.copy_(tokens.view(B, 1))
        step_loops.copy_(torch.tensor(loops, dtype=torch.long))
        replay = self._replays.get(key)
        if replay is not None:  # the compiled graph of this variant, called directly (see compile)
            graph, inputs = replay
            logits = graph(*inputs)[0]
        else:
            self._capturing = (key, (step_tokens, ones, step_loops))
            try:
                logits = self._decode_fn(
                    slot0, step_tokens, ones, step_loops, self.cache.max_len + 1, key[2], key[3]
                )
            except FailOnRecompileLimitHit:  # raised before the step runs: nothing was written yet
                if not self._warned_limit:
                    warnings.warn(
                        "decode: torch.compile's recompile limit is reached for this engine; new batch "
                        "shapes or loop counts now run eagerly",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    self._warned_limit = True
                return self.step(slot0, tokens.view(B, 1), [1] * B, n_loops)
            finally:
                self._capturing = None
        for i in range(slot0, slot0 + B):
            self.cache.host_positions[i] += 1
        return logits

    def _decode_step(
        self, slot0: int, tokens: Tensor, ones: Tensor, loops: Tensor, kv_len: int, depth: int, uniform: bool
    ) -> Tensor:
        """The compiled unit: one token per row through the whole model, the head, and the position update."""
        hidden = self._forward_fixed(slot0, tokens, ones, loops, kv_len, depth, uniform)
        self.cache.positions[slot0 : slot0 + tokens.shape[0]] += 1
        return self._logits(hidden[:, 0])

    # ------------------------------------------------------------------ the forward

    def _check(self, slot0: int, lens: list[int], n_loops: list[int] | None) -> list[int]:
        """Validate room in the cache and loop counts for slots ``[slot0, ...)``; returns each row's loops."""
        cache = self.cache
        for i, n in enumerate(lens):
            if cache.host_positions[slot0 + i] + n > cache.max_len:
                raise ValueError(
                    f"slot {slot0 + i}: {cache.host_positions[slot0 + i]} cached + {n} new tokens exceeds "
                    f"max_len={cache.max_len}; start a new sequence or raise max_len"
                )
        loops = [self.max_loops] * len(lens) if n_loops is None else list(n_loops)
        for n in loops:
            if not 1 <= n <= self.max_loops:
                raise ValueError(f"n_loops={n} is outside 1..{self.max_loops} (the engine's cache depth)")
        return loops

    def step(
        self,
        slot0: int,
        tokens: Tensor,
        lens: list[int],
        n_loops: list[int] | None = None,
        all_logits: bool = False,
    ) -> Tensor:
        """Run one padded chunk eagerly for slots ``[slot0, slot0+B)``; advances each slot by its ``lens``."""
        B, T = tokens.shape
        cache = self.cache
        host = cache.host_positions[slot0 : slot0 + B]
        loops = self._check(slot0, lens, n_loops)
        kv_len = min(_bucket(max(p + n for p, n in zip(host, lens, strict=True))), cache.max_len + 1)
        dev = self.device
        tokens = tokens.to(dev)
        lens_t = torch.tensor(lens, dtype=torch.long, device=dev)
        loops_t = torch.tensor(loops, dtype=torch.long, device=dev)
        if self.adaptive:
            hidden = self._forward_adaptive(slot0, tokens, lens_t, loops_t, kv_len, max(loops))
        else:
            uniform = min(loops) == max(loops)
            hidden = self._forward_fixed(slot0, tokens, lens_t, loops_t, kv_len, max(loops), uniform)
        cache.positions[slot0 : slot0 + B] += lens_t
        for i, n in enumerate(lens):
            cache.host_positions[slot0 + i] += n
        if all_logits:
            return self._logits(hidden)
        last = (lens_t - 1).clamp(min=0)
        return self._logits(hidden[torch.arange(B, device=dev), last])

    def _logits(self, x: Tensor) -> Tensor:
        return linear(rms_norm(x, self.view.final_norm), self.view.head).float()

    def _context(self, slot0: int, B: int, T: int, lens: Tensor, kv_len: int) -> StepContext:
        cache = self.cache
        start = cache.positions[slot0 : slot0 + B]
        offs = torch.arange(T, device=start.device)
        positions = start.unsqueeze(1) + offs  # (B, T)
        valid = offs.unsqueeze(0) < lens.unsqueeze(1)
        write_pos = torch.where(valid, positions, torch.full_like(positions, cache.max_len))
        keys = torch.arange(kv_len, device=start.device)
        visible = (keys.view(1, 1, kv_len) <= positions.unsqueeze(-1)).unsqueeze(1)
        rope_pos = positions.clamp(max=cache.max_len - 1)
        compiling = torch.compiler.is_compiling()
        return StepContext(
            rows=torch.arange(B, device=start.device).unsqueeze(1),
            write_pos=write_pos,
            visible=visible,
            freqs=None if compiling else self._freqs[rope_pos],
            cos_sin=(self._cos[rope_pos], self._sin[rope_pos]) if compiling else None,
            kv_len=kv_len,
        )

    def _block(self, x: Tensor, bw: BlockWeights, cache: Tensor, ctx: StepContext) -> Tensor:
        attend = mla_attend if isinstance(bw.attn, MLAWeights) else gqa_attend
        x = x + attend(rms_norm(x, bw.attn_norm), bw.attn, cache, ctx)
        y = rms_norm(x, bw.ffn_norm)
        return x + (moe(y, bw.moe) if bw.moe is not None else swiglu(y, bw.ffn))

    def _outer(self, x: Tensor, slot0: int, B: int, ctx: StepContext, sites: list[int], layers) -> Tensor:
        for site, bw in zip(sites, layers, strict=True):
            x = self._block(x, bw, self.cache.buffers[site][slot0 : slot0 + B], ctx)
        return x

    def _recurrent_input(self, h: Tensor, e: Tensor, t: int) -> Tensor:
        v = self.view
        x = h + self._loop_bias[t].to(h.dtype) + e
        return rms_norm(x, v.recurrent_norm) if v.recurrent_norm is not None else x

    def _act_weight(self, p: Tensor, cum: Tensor, running: Tensor, final: Tensor) -> tuple[Tensor, Tensor]:
        """ACT step: this loop's output weight and the new cumulative mass (remainder on crossing)."""
        act = self.view.act
        crossing = (cum + p) >= act.threshold
        if act.remainder_at_final:
            crossing = crossing | final
        weight = torch.where(crossing, (1.0 - cum).clamp(min=0), p) * running
        return weight, cum + p * running

    def _forward_fixed(
        self,
        slot0: int,
        tokens: Tensor,
        lens: Tensor,
        loops: Tensor,
        kv_len: int,
        depth: int,
        uniform: bool = False,
    ) -> Tensor:
        """Every token runs ``depth`` loops; rows past their own ``n_loops`` stop contributing.

        ``uniform`` (every row runs exactly ``depth`` loops, the common case) lets the final loop be known
        statically, which saves the per-row mask work.
        """
        v = self.view
        B, T = tokens.shape
        ctx = self._context(slot0, B, T, lens, kv_len)
        x = F.embedding(tokens, v.embed).to(v.dtype)
        x = self._outer(x, slot0, B, ctx, self.cache.prelude_sites, v.prelude)
        e = h = x
        A, Be = v.inject_A, v.inject_B * e  # B*e is the same in every loop: computed once
        cum = torch.zeros(B, T, dtype=torch.float32, device=x.device)
        halted = torch.zeros(B, T, dtype=torch.bool, device=x.device)
        out = torch.zeros(h.shape, dtype=torch.float32, device=x.device)  # ACT sum in fp32, as the model
        row_loops = loops.view(B, 1)
        act = v.act
        for t in range(depth):
            block_out = self._block(
                self._recurrent_input(h, e, t),
                v.recurrent,
                self.cache.buffers[self.cache.loop_sites[t]][slot0 : slot0 + B],
                ctx,
            )
            h = A * h + Be + block_out + lora_delta(block_out, v.lora, t)
            last = t == depth - 1
            if uniform:
                if not act.enabled:
                    out = h.float() if last else out
                    continue
                running = (~halted).to(torch.float32)
                p = halt_prob(h, v.halt).float()
                if last and act.remainder_at_final:
                    weight = (1.0 - cum).clamp(min=0) * running
                else:
                    weight = torch.where((cum + p) >= act.threshold, (1.0 - cum).clamp(min=0), p) * running
                out = out + weight.unsqueeze(-1) * h.float()
                if not last:
                    cum = cum + p * running
                    halted = halted | (cum >= act.threshold)
                continue
            final = row_loops == t + 1
            in_depth = row_loops > t
            if act.enabled:
                running = (~halted & in_depth).to(torch.float32)
                p = halt_prob(h, v.halt).float()
                weight, cum = self._act_weight(p, cum, running, final)
                out = out + weight.unsqueeze(-1) * h.float()
                halted = halted | (cum >= act.threshold)
                if act.remainder_at_final:
                    halted = halted | final
            else:
                out = torch.where(final.unsqueeze(-1), h.float(), out)
        return self._outer(out.to(h.dtype), slot0, B, ctx, self.cache.coda_sites, v.coda)

    def _forward_adaptive(
        self, slot0: int, tokens: Tensor, lens: Tensor, loops: Tensor, kv_len: int, depth: int
    ) -> Tensor:
        """Halted tokens leave the loop; later loops run only on (row, token) pairs still running."""
        v = self.view
        B, T = tokens.shape
        ctx = self._context(slot0, B, T, lens, kv_len)
        x = F.embedding(tokens, v.embed).to(v.dtype)
        x = self._outer(x, slot0, B, ctx, self.cache.prelude_sites, v.prelude)
        e, h = x, x.clone()  # h is updated in place below; e must stay frozen
        A, Be = v.inject_A, v.inject_B * e
        dev = x.device
        offs = torch.arange(T, device=dev)
        valid = offs.unsqueeze(0) < lens.unsqueeze(1)
        cum = torch.zeros(B, T, dtype=torch.float32, device=dev)
        running = valid.clone()
        out = torch.zeros(h.shape, dtype=torch.float32, device=dev)
        row_loops = loops.view(B, 1)
        stats = DepthStats(token_loops_full=int(lens.sum()) * depth)
        # every (row, token) position's cache row in the full slot block, for copying halted entries
        all_rows = torch.arange(B, device=dev).unsqueeze(1).expand(B, T)
        for t in range(depth):
            running = running & (row_loops > t)
            buf = self.cache.buffers[self.cache.loop_sites[t]][slot0 : slot0 + B]
            if t > 0 and self.cache.loop_sites[t] != self.cache.loop_sites[t - 1]:
                prev = self.cache.buffers[self.cache.loop_sites[t - 1]][slot0 : slot0 + B]
                idle = valid & ~running
                rows_i, pos_i = all_rows[idle], ctx.write_pos[idle]
                buf[rows_i, pos_i] = prev[rows_i, pos_i]  # halted tokens keep their last entry at depth t
            counts = running.sum(1)
            n_run = int(counts.sum())
            stats.per_loop_tokens.append(n_run)
            if n_run == 0:
                continue
            stats.token_loops_run += n_run
            rows = torch.nonzero(counts > 0).squeeze(1)  # (B',)
            width = int(counts.max())
            order = torch.argsort((~running[rows]).to(torch.int8), dim=1, stable=True)[:, :width]  # (B', T')
            col_ok = torch.arange(width, device=dev).unsqueeze(0) < counts[rows].unsqueeze(1)
            sub = StepContext(
                rows=torch.arange(len(rows), device=dev).unsqueeze(1),
                write_pos=torch.where(
                    col_ok,
                    ctx.write_pos[rows.unsqueeze(1), order],
                    torch.full_like(order, self.cache.max_len),
                ),
                visible=ctx.visible[rows]
                .squeeze(1)[torch.arange(len(rows), device=dev).unsqueeze(1), order]
                .unsqueeze(1),
                freqs=ctx.freqs[rows.unsqueeze(1), order],
                cos_sin=None,
                kv_len=kv_len,
            )
            h_sub = h[rows.unsqueeze(1), order]
            e_sub = e[rows.unsqueeze(1), order]
            block_out = self._block(
                self._recurrent_input(h_sub, e_sub, t), v.recurrent, _RowView(buf, rows), sub
            )
            h_new = A * h_sub + Be[rows.unsqueeze(1), order] + block_out + lora_delta(block_out, v.lora, t)
            sel_rows = rows.unsqueeze(1).expand_as(order)[col_ok]
            sel_cols = order[col_ok]
            h_ok = h_new[col_ok]
            h[sel_rows, sel_cols] = h_ok
            final = row_loops.expand(B, T)[sel_rows, sel_cols] == t + 1
            if v.act.enabled:
                p = halt_prob(h_ok, v.halt).float()
                c = cum[sel_rows, sel_cols]
                weight, c_new = self._act_weight(p, c, torch.ones_like(p), final)
                out[sel_rows, sel_cols] += weight.unsqueeze(-1) * h_ok.float()
                cum[sel_rows, sel_cols] = c_new
                done = c_new >= v.act.threshold
                if v.act.remainder_at_final:
                    done = done | final
                running[sel_rows[done], sel_cols[done]] = False
            else:
                out[sel_rows[final], sel_cols[final]] = h_ok[final].float()
        self.stats.add(stats)
        self.last_stats = stats
        return self._outer(out.to(h.dtype), slot0, B, ctx, self.cache.coda_sites, v.coda)


class _RowView:
    """A cache block restricted to some rows: writes land in place, reads gather those rows.

    Lets adaptive depth run attention for only the rows that still have running tokens.
    """

    def __init__(self, buf: Tensor, rows: Tensor) -> None:
        self.buf, self.rows = buf, rows
        self.dtype = buf.dtype
        self._all = rows.numel() == buf.shape[0]

    def index_put_(self, index: tuple[Tensor, Tensor], values: Tensor) -> None:
        rows, pos = index
        self.buf.index_put_((self.rows[rows], pos), values)

    def __getitem__(self, item):
        return self.buf[item] if self._all else self.buf[self.rows][item]
