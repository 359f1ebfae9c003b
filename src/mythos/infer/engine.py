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
- **per-token exits** (``exit=`` an :class:`~mythos.model.exits.ExitCriterion`, per engine or per row): the
  adaptive path, with the token's loop ended by a criterion on two successive loops (KL of the next-token
  distributions, relative change of the latent, argmax stability) instead of a trained ACT head. An exit is
  the token's last loop: without ACT its output is its latent there; with ACT it takes the remaining mass.
  The logit criteria run the Coda and head on the running tokens at every loop (the final output is then
  computed once more for every token, so the cache ends consistent). A criterion that never fires gives
  exactly fixed depth.

Loops each returned token ran are in :attr:`Engine.last_loops`; totals in :attr:`Engine.stats`.
The compiled decode step is replayed by :mod:`mythos.infer.replay`; the math is :mod:`mythos.model.functional`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, is_dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._dynamo.exc import FailOnRecompileLimitHit

from mythos.infer.attention import decode_attention
from mythos.infer.cache import StaticKVCache
from mythos.infer.kernels import StepContext, halt_prob, linear, lora_delta, moe, swiglu
from mythos.infer.replay import ReplayedStep
from mythos.infer.view import copied_from, view_from_model, with_weight_dtype
from mythos.infer.weights import BlockWeights, DecodeView, rms_norm
from mythos.model.exits import ExitCriterion
from mythos.model.functional import act_step, lti_update


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
        exit: ExitCriterion | None = None,
    ) -> None:
        if act_threshold is not None and not 0.0 < act_threshold <= 1.0:
            raise ValueError(f"act_threshold={act_threshold} is invalid: use a number in (0, 1]")
        if exit is not None and not isinstance(exit, ExitCriterion):
            raise ValueError(
                f"exit={exit!r} is invalid: pass an ExitCriterion, e.g. ExitCriterion.parse('kl:0.01')"
            )
        self.act_threshold, self.weight_dtype = act_threshold, weight_dtype
        self.view = self._arrange(view)
        decode_attention(view.attn_type)  # an unknown attention type fails here, not mid-forward
        self.max_loops = n_loops or view.max_loop_iters
        self.cache = StaticKVCache.allocate(
            self.view,
            slots,
            max_len or view.max_seq_len,
            self.max_loops,
            cache_policy,
            dtype=cache_dtype,
            device=device,
        )
        self.adaptive = adaptive
        self.exit = exit
        self.prefill_chunk = prefill_chunk
        self.device = torch.device(device)
        self.stats = DepthStats()
        self.last_stats = DepthStats()
        self._last_loops: Tensor | list[int] | None = None
        self._freqs = view.rope_freqs.to(device)
        self._cos, self._sin = self._freqs.real.contiguous(), self._freqs.imag.contiguous()
        self._loop_bias = [view.loop_bias(t).to(device) for t in range(self.max_loops)]
        self.replay = ReplayedStep(self._decode_step, self.device)
        self.compiled = False
        self._warned_limit = False
        self.model = None
        self._watched: list[Tensor] = []  # the model's parameters this engine holds copies of
        self._weights_seen: list[int] = []

    @property
    def last_loops(self) -> Tensor | None:
        """Loops run by each token whose logits the last call returned: (B,), or (B, T) with ``all_logits``."""
        if isinstance(self._last_loops, list):  # a compiled decode step keeps the row loop counts as given
            self._last_loops = torch.tensor(self._last_loops, dtype=torch.long)
        return self._last_loops

    @last_loops.setter
    def last_loops(self, value: Tensor | list[int]) -> None:
        self._last_loops = value

    def _arrange(self, view: DecodeView) -> DecodeView:
        """The engine's copy of a view: the inference-time ACT threshold and weight dtype applied."""
        if self.act_threshold is not None:  # trade accuracy for depth at inference: lower halts sooner
            view = replace(view, act=replace(view.act, threshold=self.act_threshold))
        if self.weight_dtype is not None and self.weight_dtype != view.dtype:  # weight-only low precision
            view = with_weight_dtype(view, self.weight_dtype)
        return view

    @classmethod
    def from_model(cls, model, **kwargs) -> Engine:
        """An engine over a ``mythos.model.Mythos`` that always decodes with the model's current weights.

        Most weights are borrowed (the model's own storage); the few the engine keeps in another layout
        (the injection's A, MLA's absorbed up-projections, the experts' decode layouts, and every matrix
        under ``weight_dtype``) are copies, which :meth:`refresh` rewrites in place. Each call checks the
        version counters of the parameters behind those copies (bumped by every in-place update: an
        optimizer step, ``load_state_dict``) and refreshes when they moved, so evaluating during training
        sees the weights just trained. Parameters *replaced* by new tensors are not seen: build a new engine.
        """
        engine = cls(view_from_model(model), device=model.embed.weight.device, **kwargs)
        engine.model = model
        # under weight_dtype every matrix is a copy; otherwise only the re-laid-out ones (a handful)
        engine._watched = list(model.parameters()) if engine.weight_dtype is not None else copied_from(model)
        engine._weights_seen = engine._weight_versions()
        return engine

    def _weight_versions(self) -> list[int]:
        return [t._version for t in self._watched]

    def refresh(self) -> None:
        """Rewrite the engine's copies of the model's weights from the model (in place, so compiled graphs
        stay valid). Called automatically when the model's weights changed; cheap to call by hand."""
        if self.model is None:
            return
        with torch.no_grad():
            fresh = self._arrange(view_from_model(self.model))
            for old, new in zip(_view_tensors(self.view), _view_tensors(fresh), strict=True):
                if old.data_ptr() != new.data_ptr() or old.shape != new.shape:
                    old.copy_(new)
        self._weights_seen = self._weight_versions()

    def _sync_weights(self) -> None:
        if self._watched and self._weight_versions() != self._weights_seen:
            self.refresh()

    # ------------------------------------------------------------------ public API

    @property
    def max_len(self) -> int:
        return self.cache.max_len

    def compile(self, **kwargs) -> None:
        """Capture the fixed-depth decode step — loop, head and position update — with ``torch.compile``.

        Prompts, adaptive depth and per-token exits stay eager. Compiled steps read the whole cache
        (masked), gpt-fast style, so every step has the same shapes and one graph serves a whole generation;
        eager steps read only up to the longest live sequence. Each variant's graph is replayed directly
        (:mod:`mythos.infer.replay`): the engine never replaces its view or cache, and neither should its
        users (call ``compile()`` again after doing so). Pass ``backend=`` to opt out of replay.
        """
        self.replay.compile(**kwargs)
        self.compiled = True

    def decode_width(self, n: int) -> int:
        """Rows to decode for ``n`` live slots: ``n`` eagerly; the next power of two (capped at the slot
        count) when compiled, so a server whose batch size moves around compiles a handful of graphs."""
        if not self.compiled:
            return n
        return min(1 << max(n - 1, 0).bit_length(), self.cache.slots)

    def warm_up(self) -> list[int]:
        """Compile the decode graph of every width :meth:`decode_width` can return, at full depth, so a server
        never stalls on a first compile mid-request; leaves every slot empty. Returns the widths compiled."""
        widths = sorted({self.decode_width(n) for n in range(1, self.cache.slots + 1)})
        if self.compiled:
            for w in widths:
                self.prefill(0, [[0]] * w, exits=[None] * w)
                self.decode(0, torch.zeros(w, dtype=torch.long), exits=[None] * w)
            self.reset()
        return widths

    def reset(self, slot: int | None = None) -> None:
        for s in range(self.cache.slots) if slot is None else [slot]:
            self.cache.reset_slot(s)

    @torch.inference_mode()
    def prefill(
        self,
        slot0: int,
        prompts: list[list[int]],
        n_loops: list[int] | None = None,
        all_logits: bool = False,
        exits: list[ExitCriterion | None] | None = None,
    ) -> Tensor:
        """Append ``prompts`` (one per slot from ``slot0``) in chunks; returns last-token logits (B, V).

        With ``all_logits`` returns (B, T_max, V) for every prompt position (padding rows are junk).
        ``exits``: a per-row exit criterion (None: the engine's ``exit``).
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
            logits = self.step(slot0, tokens, lens, n_loops, all_logits=all_logits, exits=exits)
            outs.append((logits, lens, self.last_loops))
        if all_logits:
            self.last_loops = torch.cat([loops for _, _, loops in outs], dim=1)
            return torch.cat([o for o, _, _ in outs], dim=1)
        # the last chunk that holds a token of each prompt gives that prompt's last logits
        last = torch.empty(B, self.view.vocab_size, dtype=outs[0][0].dtype)
        last_loops = torch.empty(B, dtype=torch.long)
        for logits, lens, loops in outs:
            for i, n in enumerate(lens):
                if n:
                    last[i] = logits[i]
                    last_loops[i] = loops[i]
        self.last_loops = last_loops
        return last

    @torch.inference_mode()
    def decode(
        self,
        slot0: int,
        tokens: Tensor,
        n_loops: list[int] | None = None,
        exits: list[ExitCriterion | None] | None = None,
    ) -> Tensor:
        """One new token per slot in ``[slot0, slot0 + B)``; returns next-token logits (B, V)."""
        B = tokens.shape[0]
        eager = not self.compiled or self.adaptive
        if eager or (self.exit is not None or exits is not None) and any(self._exits(B, exits)):
            logits = self.step(slot0, tokens.view(B, 1), [1] * B, n_loops, exits=exits)
            self.last_loops = self.last_loops[:, 0]
            return logits
        self._sync_weights()
        loops = self._check(slot0, [1] * B, n_loops)
        key = (slot0, B, max(loops), min(loops) == max(loops))
        step_tokens, ones, step_loops = self.replay.buffers(  # the same tensors feed every replay
            key,
            lambda: (
                torch.zeros(B, 1, dtype=torch.long, device=self.device),
                torch.ones(B, dtype=torch.long, device=self.device),
                torch.zeros(B, dtype=torch.long, device=self.device),
            ),
        )
        step_tokens.copy_(tokens.view(B, 1))
        step_loops.copy_(torch.tensor(loops, dtype=torch.long))
        try:
            logits = self.replay(
                key, slot0, step_tokens, ones, step_loops, self.cache.max_len + 1, key[2], key[3]
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
            logits = self.step(slot0, tokens.view(B, 1), [1] * B, n_loops, exits=exits)
            self.last_loops = self.last_loops[:, 0]
            return logits
        for i in range(slot0, slot0 + B):
            self.cache.host_positions[i] += 1
        self.last_loops = loops
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

    def _exits(self, B: int, exits: list[ExitCriterion | None] | None) -> list[ExitCriterion | None]:
        """Each row's exit criterion (the engine's ``exit`` where the call gives none)."""
        if exits is None:
            return [self.exit] * B
        exits = list(exits)
        if len(exits) != B:
            raise ValueError(f"exits has {len(exits)} entries for {B} rows: give one per row (None: no exit)")
        for c in exits:
            if c is not None and not isinstance(c, ExitCriterion):
                raise ValueError(
                    f"exits: {c!r} is not an ExitCriterion; parse 'kl:0.01' with ExitCriterion.parse"
                )
        return exits

    def step(
        self,
        slot0: int,
        tokens: Tensor,
        lens: list[int],
        n_loops: list[int] | None = None,
        all_logits: bool = False,
        exits: list[ExitCriterion | None] | None = None,
    ) -> Tensor:
        """Run one padded chunk eagerly for slots ``[slot0, slot0+B)``; advances each slot by its ``lens``."""
        self._sync_weights()
        B, T = tokens.shape
        cache = self.cache
        host = cache.host_positions[slot0 : slot0 + B]
        loops = self._check(slot0, lens, n_loops)
        row_exits = self._exits(B, exits)
        kv_len = min(_bucket(max(p + n for p, n in zip(host, lens, strict=True))), cache.max_len + 1)
        dev = self.device
        tokens = tokens.to(dev)
        lens_t = torch.tensor(lens, dtype=torch.long, device=dev)
        loops_t = torch.tensor(loops, dtype=torch.long, device=dev)
        if self.adaptive or any(c is not None for c in row_exits):
            hidden, loops_run = self._forward_adaptive(
                slot0, tokens, lens_t, loops_t, kv_len, max(loops), row_exits
            )
        else:
            uniform = min(loops) == max(loops)
            hidden = self._forward_fixed(slot0, tokens, lens_t, loops_t, kv_len, max(loops), uniform)
            loops_run = loops_t.view(B, 1).expand(B, T)
        cache.positions[slot0 : slot0 + B] += lens_t
        for i, n in enumerate(lens):
            cache.host_positions[slot0 + i] += n
        if all_logits:
            self.last_loops = loops_run.cpu()
            return self._logits(hidden)
        last = (lens_t - 1).clamp(min=0)
        rows = torch.arange(B, device=dev)
        self.last_loops = loops_run[rows, last].view(B, 1).cpu()
        return self._logits(hidden[rows, last])

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
        attend = decode_attention(self.view.attn_type).kernel
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

    def _prelude(self, slot0: int, tokens: Tensor, lens: Tensor, kv_len: int) -> tuple[StepContext, Tensor]:
        """The call's positions and masks, and the Prelude's output (the loop's frozen input ``e``)."""
        B, T = tokens.shape
        ctx = self._context(slot0, B, T, lens, kv_len)
        x = F.embedding(tokens, self.view.embed).to(self.view.dtype)
        return ctx, self._outer(x, slot0, B, ctx, self.cache.prelude_sites, self.view.prelude)

    def _loop(self, h: Tensor, e: Tensor, t: int, cache, ctx: StepContext) -> Tensor:
        """One recurrent iteration: block, depth LoRA, LTI injection (the model's ``RecurrentBlock.step``)."""
        v = self.view
        out = self._block(self._recurrent_input(h, e, t), v.recurrent, cache, ctx)
        return lti_update(h, v.inject_A, v.inject_B, e, out + lora_delta(out, v.lora, t))

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
        ctx, x = self._prelude(slot0, tokens, lens, kv_len)
        e = h = x
        cum = torch.zeros(B, T, dtype=torch.float32, device=x.device)
        halted = torch.zeros(B, T, dtype=torch.bool, device=x.device)
        out = torch.zeros(h.shape, dtype=torch.float32, device=x.device)  # ACT sum in fp32, as the model
        row_loops = loops.view(B, 1)
        act = v.act
        for t in range(depth):
            h = self._loop(h, e, t, self.cache.buffers[self.cache.loop_sites[t]][slot0 : slot0 + B], ctx)
            last = t == depth - 1
            if uniform:
                if not act.enabled:
                    out = h.float() if last else out
                    continue
                running = (~halted).to(torch.float32)
                p = halt_prob(h, v.halt).float()
                step = act_step(p, cum, running, act.threshold, final=last and act.remainder_at_final)
                out = out + step.weight.unsqueeze(-1) * h.float()
                if not last:
                    cum = step.cumulative
                    halted = halted | (cum >= act.threshold)
                continue
            final = row_loops == t + 1
            in_depth = row_loops > t
            if act.enabled:
                running = (~halted & in_depth).to(torch.float32)
                p = halt_prob(h, v.halt).float()
                step = act_step(p, cum, running, act.threshold, final if act.remainder_at_final else False)
                cum = step.cumulative
                out = out + step.weight.unsqueeze(-1) * h.float()
                halted = halted | (cum >= act.threshold)
                if act.remainder_at_final:
                    halted = halted | final
            else:
                out = torch.where(final.unsqueeze(-1), h.float(), out)
        return self._outer(out.to(h.dtype), slot0, B, ctx, self.cache.coda_sites, v.coda)

    def _forward_adaptive(
        self,
        slot0: int,
        tokens: Tensor,
        lens: Tensor,
        loops: Tensor,
        kv_len: int,
        depth: int,
        exits: list[ExitCriterion | None],
    ) -> tuple[Tensor, Tensor]:
        """Halted or exited tokens leave the loop; later loops run only on (row, token) pairs still running.

        Returns the hidden states after the Coda and the loops each token ran (B, T).
        """
        v = self.view
        B, T = tokens.shape
        ctx, x = self._prelude(slot0, tokens, lens, kv_len)
        e, h = x, x.clone()  # h is updated in place below; e must stay frozen
        dev = x.device
        offs = torch.arange(T, device=dev)
        valid = offs.unsqueeze(0) < lens.unsqueeze(1)
        cum = torch.zeros(B, T, dtype=torch.float32, device=dev)
        running = valid.clone()
        out = torch.zeros(h.shape, dtype=torch.float32, device=dev)
        row_loops = loops.view(B, 1)
        loops_run = torch.zeros(B, T, dtype=torch.long, device=dev)
        stats = DepthStats(token_loops_full=int((lens * loops).sum()))
        # exit criteria: the distinct ones, each with the rows that use it (a loop over criteria, not tokens)
        criteria = {c: torch.tensor([x == c for x in exits], device=dev) for c in exits if c is not None}
        probe = any(c.needs_logits for c in criteria)
        streak = torch.zeros(B, T, dtype=torch.long, device=dev)
        prev_logits = torch.zeros(B, T, v.vocab_size, device=dev) if probe else None
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
            h_new = self._loop(h_sub, e[rows.unsqueeze(1), order], t, _RowView(buf, rows), sub)
            sel_rows = rows.unsqueeze(1).expand_as(order)[col_ok]
            sel_cols = order[col_ok]
            h_ok = h_new[col_ok]
            h[sel_rows, sel_cols] = h_ok
            loops_run[sel_rows, sel_cols] += 1
            final = row_loops.expand(B, T)[sel_rows, sel_cols] == t + 1
            exited = torch.zeros_like(final)
            if criteria and t < depth - 1:
                exited = self._exited(criteria, t, h_sub[col_ok], h_new, col_ok, rows, slot0, sub, sel_rows, sel_cols, streak, prev_logits)  # fmt: skip
            if v.act.enabled:  # an exit is the token's last loop: it takes the remaining mass
                p = halt_prob(h_ok, v.halt).float()
                fin = (final | exited) if v.act.remainder_at_final else exited
                step = act_step(p, cum[sel_rows, sel_cols], torch.ones_like(p), v.act.threshold, fin)
                out[sel_rows, sel_cols] += step.weight.unsqueeze(-1) * h_ok.float()
                cum[sel_rows, sel_cols] = step.cumulative
                done = (step.cumulative >= v.act.threshold) | fin
                running[sel_rows[done], sel_cols[done]] = False
            else:
                last = final | exited
                out[sel_rows[last], sel_cols[last]] = h_ok[last].float()
                running[sel_rows[exited], sel_cols[exited]] = False
        self.stats.add(stats)
        self.last_stats = stats
        hidden = self._outer(out.to(h.dtype), slot0, B, ctx, self.cache.coda_sites, v.coda)
        return hidden, loops_run

    def _exited(
        self,
        criteria: dict[ExitCriterion, Tensor],
        t: int,
        prev_h: Tensor,
        h_new: Tensor,
        col_ok: Tensor,
        rows: Tensor,
        slot0: int,
        sub: StepContext,
        sel_rows: Tensor,
        sel_cols: Tensor,
        streak: Tensor,
        prev_logits: Tensor | None,
    ) -> Tensor:
        """Which of the tokens just run (``h_new[col_ok]``) meet their row's exit criterion at loop ``t``.

        The logit criteria read the next-token distribution of each running token's latent at every loop:
        the Coda and head run on those tokens only (their Coda cache entries are rewritten by the final
        pass). Criteria compare loop t-1 with loop t, so no token exits at loop 0.
        """
        h_ok = h_new[col_ok]
        logits = None
        if prev_logits is not None:
            x = h_new
            block = slice(slot0, slot0 + streak.shape[0])
            for site, bw in zip(self.cache.coda_sites, self.view.coda, strict=True):
                x = self._block(x, bw, _RowView(self.cache.buffers[site][block], rows), sub)
            logits = self._logits(x[col_ok])
        exited = torch.zeros(h_ok.shape[0], dtype=torch.bool, device=h_ok.device)
        if t > 0:
            for crit, row_mask in criteria.items():
                mine = row_mask[sel_rows]
                s, c = sel_rows[mine], sel_cols[mine]
                done, streak[s, c] = crit.step(
                    streak[s, c],
                    prev_h[mine],
                    h_ok[mine],
                    prev_logits[s, c] if crit.needs_logits else None,
                    logits[mine] if crit.needs_logits else None,
                )
                exited[mine] = done
        if logits is not None:
            prev_logits[sel_rows, sel_cols] = logits
        return exited


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


def _view_tensors(obj) -> list[Tensor]:
    """Every tensor a view holds, in a fixed order (dataclass fields, lists), for :meth:`Engine.refresh`."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, list | tuple):
        return [t for item in obj for t in _view_tensors(item)]
    if is_dataclass(obj):
        return [t for f in fields(obj) for t in _view_tensors(getattr(obj, f.name))]
    return []
