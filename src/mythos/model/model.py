"""`Mythos`: embed -> prelude (dense blocks) -> recurrent block looped n_loops times -> coda -> norm -> tied head."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .block import TransformerBlock
from .cache import CacheFullError, KVCache
from .config import MythosConfig
from .norm import RMSNorm
from .onednn import Linear
from .recurrent import RecurrentBlock
from .rope import rope_tables

TOKENIZER_NAME = "tokenizer.json"


@dataclass
class LoopAux:
    """Per-call diagnostics of the loop. Tensors stay on the device: reading them is the caller's sync."""

    ponder_cost: torch.Tensor  # scalar, differentiable; 0 when ACT is off
    expert_load: torch.Tensor  # (n_experts,) fraction of routed assignments per expert, averaged over loops
    hidden_norms: torch.Tensor  # (loops_run,) mean L2 norm of the hidden state after each loop run
    depth: torch.Tensor  # scalar tensor: mean loops a position used before halting

    @property
    def loops_run(self) -> int:
        """Loops actually executed: n_loops, or fewer when every position halted early (no cache)."""
        return int(self.hidden_norms.shape[0])

    @property
    def mean_depth(self) -> float:
        """Mean number of loops a token actually used (ACT); a host sync."""
        return float(self.depth)


@dataclass
class MythosOutput:
    logits: torch.Tensor  # (batch, time, vocab)
    aux: LoopAux


class Mythos(nn.Module):
    """Recurrent-Depth Transformer language model (a public reconstruction of a hypothesis)."""

    def __init__(self, cfg: MythosConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.checkpoint_dir: Path | None = None  # set by from_pretrained: where its tokenizer.json would be
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.prelude = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.prelude_layers)])
        self.recurrent = RecurrentBlock(cfg)
        self.coda = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.coda_layers)])
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # weight tying
        self._init_weights()

    def _init_weights(self) -> None:
        """N(0, init_std) for every linear and embedding weight, as the reference does."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=self.cfg.init_std)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        n_loops: int | None = None,
        cache: KVCache | None = None,
        return_aux: bool = False,
        grad_loops: int | None = None,
        checkpoint_loops: bool = False,
        row_loops: torch.Tensor | None = None,
    ) -> torch.Tensor | MythosOutput:
        """Logits (batch, time, vocab); ``MythosOutput(logits, aux)`` when ``return_aux``.

        ``row_loops`` (batch,) gives every row its own depth (training with depth sampled per sequence): the
        batch runs to the largest and each row keeps its state after its own last loop. Not with a cache.

        With ``cache`` the tokens continue the cached sequence at ``cache.pos`` (prefill, chunked prefill or
        decode) and the cache advances by ``time``.
        """
        cfg = self.cfg
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
        batch, length = input_ids.shape
        if cache is not None:
            if n_loops is not None and n_loops != cache.n_loops:
                raise ValueError(
                    f"n_loops={n_loops} but the cache was built for n_loops={cache.n_loops}: every loop depth "
                    "needs its own cache slot; call model.new_cache(..., n_loops=...) with the depth you want"
                )
            if row_loops is not None:
                raise ValueError("row_loops (a depth per row) is for training forwards, not with a KV cache")
            if batch != cache.batch_size:
                raise ValueError(f"input batch {batch} != cache batch_size {cache.batch_size}")
            n_loops = cache.n_loops
            cache.check_room(length)
            start = cache.pos
        else:
            if row_loops is not None:
                row_loops = torch.as_tensor(row_loops, dtype=torch.long)
                n_loops = self._check_row_loops(row_loops, batch, n_loops)
            n_loops = n_loops if n_loops is not None else cfg.max_loop_iters
            start = 0
        if n_loops < 1:
            raise ValueError(f"n_loops={n_loops} is invalid: must be >= 1")
        if grad_loops is not None and not 1 <= grad_loops <= n_loops:
            raise ValueError(f"grad_loops={grad_loops} is invalid: must be in [1, n_loops={n_loops}]")
        if start + length > cfg.max_seq_len:
            raise CacheFullError(
                f"sequence position {start + length} exceeds max_seq_len={cfg.max_seq_len}; "
                "use shorter inputs or a config with a larger max_seq_len"
            )

        x = self.embed(input_ids)
        rope = rope_tables(cfg.rope_dim, start, length, cfg.rope_theta, x.device)
        for i, layer in enumerate(self.prelude):
            x = layer(x, rope, cache.prelude_slot(i) if cache is not None else None, start)
        e = x
        x, stats = self.recurrent(
            x,
            e,
            rope,
            n_loops,
            cache=cache,
            start=start,
            grad_loops=grad_loops,
            checkpoint_loops=checkpoint_loops,
            row_loops=row_loops,
        )
        for i, layer in enumerate(self.coda):
            x = layer(x, rope, cache.coda_slot(i) if cache is not None else None, start)
        logits = self.head(self.norm(x))
        if cache is not None:
            cache.pos += length
        if not return_aux:
            return logits
        aux = LoopAux(stats.ponder_cost, stats.expert_load, stats.hidden_norms, stats.depth)
        return MythosOutput(logits, aux)

    @staticmethod
    def _check_row_loops(row_loops: torch.Tensor, batch: int, n_loops: int | None) -> int:
        """Validate ``row_loops``; the loop count (its deepest row unless ``n_loops`` is given).

        Compiled, the values are checked by an assertion inside the graph (reading them on the host would be
        a graph break), so ``n_loops`` must be given.
        """
        if row_loops.shape != (batch,):
            raise ValueError(
                f"row_loops must be ({batch},) integers >= 1 (one depth per row), got "
                f"shape {tuple(row_loops.shape)}"
            )
        if torch.compiler.is_compiling():
            if n_loops is None:
                raise ValueError("a compiled forward with row_loops needs n_loops (its deepest row)")
            in_range = ((row_loops >= 1) & (row_loops <= n_loops)).all()
            torch._assert_async(in_range, "row_loops must be integers in [1, n_loops] (one depth per row)")
            return n_loops
        if int(row_loops.min()) < 1:
            raise ValueError(
                f"row_loops must be ({batch},) integers >= 1 (one depth per row), got {row_loops}"
            )
        deepest = int(row_loops.max())
        n_loops = deepest if n_loops is None else n_loops
        if deepest > n_loops:
            raise ValueError(f"row_loops has a depth {deepest} > n_loops={n_loops}")
        return n_loops

    # ------------------------------------------------------------------ helpers
    def new_cache(
        self,
        batch_size: int = 1,
        max_len: int | None = None,
        n_loops: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """A preallocated KV cache sized for this model (defaults: max_seq_len, max_loop_iters, model dtype)."""
        ref = self.embed.weight
        return KVCache(
            self.cfg,
            batch_size,
            max_len if max_len is not None else self.cfg.max_seq_len,
            n_loops if n_loops is not None else self.cfg.max_loop_iters,
            device=device if device is not None else ref.device,
            dtype=dtype if dtype is not None else ref.dtype,
        )

    def update_router_bias(self, load: torch.Tensor, rate: float | None = None) -> torch.Tensor:
        """Aux-loss-free balancing step from ``aux.expert_load``; call once per training step."""
        return self.recurrent.block.ffn.update_router_bias(load, rate)

    def num_parameters(self) -> int:
        """Unique trainable parameters (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 32,
        n_loops: int | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        seed: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Prompt plus new tokens, (batch, time + new), like the reference's ``generate`` and transformers'.

        A thin method over :func:`mythos.model.generate.generate` (which returns only the new tokens); extra
        keyword arguments (``stop_tokens``, ``pad_token_id``) pass through to it.
        """
        from .generate import generate

        prompt = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
        new = generate(
            self,
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            eos_token_id=eos_token_id,
            seed=seed,
            n_loops=n_loops,
            **kwargs,
        )
        return torch.cat([prompt.to(new.device), new], dim=1)

    def save_pretrained(
        self, path: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | None = None
    ) -> Path:
        """Write the safetensors + config.json checkpoint (atomically) and its tokenizer.json beside it.

        ``tokenizer`` is a tokenizer.json or a directory holding one; by default the one of the checkpoint this
        model was loaded from (``from_pretrained``), if any, so a loaded text model saves as a text model.
        """
        import tempfile

        from .checkpoint import save_checkpoint

        tok = Path(tokenizer) if tokenizer is not None else self.checkpoint_dir
        if tok is not None and tok.is_dir():
            tok = tok / TOKENIZER_NAME
        if tokenizer is not None and not tok.is_file():
            raise FileNotFoundError(f"tokenizer {str(tokenizer)!r}: no {TOKENIZER_NAME} there")
        tok_bytes = tok.read_bytes() if tok is not None and tok.is_file() else None  # before path is replaced
        target = save_checkpoint(self, path)
        if tok_bytes is not None:
            fd, tmp = tempfile.mkstemp(prefix=f".{TOKENIZER_NAME}.", dir=target)
            with os.fdopen(fd, "wb") as f:
                f.write(tok_bytes)
            os.replace(tmp, target / TOKENIZER_NAME)
        return target

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        map_location: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> Mythos:
        """Load a checkpoint directory, or a training run folder's latest checkpoint (see ``mythos.model.locate``).

        The checkpoint's tokenizer, when it has one, is ``Path(model.checkpoint_dir) / "tokenizer.json"``.
        """
        from .checkpoint import load_checkpoint
        from .locate import find_checkpoint

        directory = find_checkpoint(path)
        model = load_checkpoint(directory, map_location=map_location, dtype=dtype)
        model.checkpoint_dir = directory
        return model
