"""What torchrun starts for the meta-device initialisation tests (``python meta_init_worker.py MODE OUT [ARG]``).

``values EP LIMIT``: build on meta, shard (expert parallelism over EP ranks, FSDP2), materialise with
``exact_limit=LIMIT``; rank 0 writes which entries of the gathered state differ from ``Mythos(cfg)`` at the same
seed, both sides' per-entry statistics, whether the head is still tied, and whether the generator ends where
one process's does.
``memory meta|full``: the peak RSS growth (MB) of each rank while its model is built and sharded, built on the
meta device or whole on every rank first (today's path without --meta-init).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from mythos.model import Mythos, get_preset
from mythos.train.meta_init import build_on_meta, materialize
from mythos.train.parallel import shard_model

SEED = 3


def _values(ep: int, exact_limit: int) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    cfg = get_preset("tiny", dim=32, n_experts=8, act=True)
    torch.manual_seed(SEED)
    model = build_on_meta(cfg)
    shard_model(model, expert_parallel=ep)
    materialize(model, torch.device("cpu"), exact_limit=exact_limit)
    after = torch.get_rng_state()
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    result = {"tied": model.head.weight is model.embed.weight}
    if dist.get_rank() != 0:  # the gathered state is rank 0's
        return result
    torch.manual_seed(SEED)
    reference = Mythos(cfg).state_dict()
    result["rng_like_one_process"] = torch.equal(after, torch.get_rng_state())
    result["keys_equal"] = sorted(full) == sorted(reference)
    result["differ"] = sorted(k for k in reference if not torch.equal(reference[k], full[k]))
    result["stats"] = {
        k: [
            [float(t.float().mean()), float(t.float().std()) if t.numel() > 1 else 0.0, t.numel()]
            for t in pair
        ]
        for k, pair in ((k, (reference[k], full[k])) for k in reference)
    }
    # the defect of DTensor's random ops on a CPU mesh: every shard the same numbers
    result["repeated_halves"] = sorted(
        k
        for k, t in full.items()
        if t.dim() >= 2 and t.shape[0] % 2 == 0 and torch.equal(t[: t.shape[0] // 2], t[t.shape[0] // 2 :])
    )
    return result


def _memory(how: str) -> dict:
    # the 10b preset's structure (2 prelude + 2 coda blocks, 128 experts top-4 + 2 shared, MLA) at small widths,
    # as in test_distributed_fsdp.py's memory test
    cfg = get_preset(
        "10b",
        dim=256,
        n_heads=8,
        kv_lora_rank=32,
        q_lora_rank=64,
        qk_rope_head_dim=16,
        qk_nope_head_dim=16,
        v_head_dim=16,
        expert_dim=352,
        lora_rank=8,
        max_seq_len=64,
        max_loop_iters=4,
        act_early_exit=False,
    )
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(SEED)
    if how == "meta":
        model = build_on_meta(cfg)
        shard_model(model)
        materialize(model, torch.device("cpu"))
    else:
        model = shard_model(Mythos(cfg))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    peaks = [None] * dist.get_world_size()
    dist.all_gather_object(peaks, peak / 1e6)
    params = sum(p.numel() for p in model.parameters())
    largest = max(p.numel() for p in model.parameters())
    return {"peak_mb": peaks, "params": params, "largest_param": largest}


def main(mode: str, out: Path, args: list[str]) -> None:
    dist.init_process_group("gloo")
    result = _values(int(args[0]), int(args[1])) if mode == "values" else _memory(args[0])
    if dist.get_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{mode}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
