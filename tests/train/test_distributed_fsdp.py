"""FSDP2 per block, bf16 mixed precision and sharded (DCP) checkpoints, under torchrun with gloo on CPU.

Its own port, loss and argument helpers stay here (not tests/train/helpers.py): torchrun also runs this file as a
script, where the package import is unavailable.

This file is also the worker torchrun starts (``python test_distributed_fsdp.py MODE OUT``): real processes,
a real gloo process group, real files; the pytest side launches it and compares what the ranks wrote.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

GLOBAL_BATCH = 6  # divisible by 1, 2 and 3 ranks
EP_BATCH = 8  # expert-parallel runs: divisible by 1, 2 and 4 ranks
SEQ = 16
LOOPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, mode: str, out: Path, *extra: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        __file__,
        mode,
        str(out),
        *extra,
    ]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / f"{mode}.json").read_text())


TRAIN_ARGS = ["--model", "tiny", "--set", "dim=32", "--set", "act=false", "--task", "binding"]
TRAIN_ARGS += ["--task-option", "n_statements=6", "--task-option", "n_names=12", "--train-hops", "3"]
TRAIN_ARGS += [
    "--loops",
    "1:3",
    "--seed",
    "3",
    "--no-progress",
    "--steps",
    "4",
    "--warmup",
    "1",
    "--lr",
    "3e-3",
]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "telemetry.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.slow
def test_fsdp2_per_block_gives_the_one_process_losses_and_gathers_the_loop_once(tmp_path):
    """Losses AND gradient norms (AdamW's first steps barely depend on gradient scale: the loss alone would
    not see a lost gradient contribution) equal one process at the same global batch."""
    one = _torchrun(1, "parity", tmp_path / "one")
    two = _torchrun(2, "parity", tmp_path / "two")
    expected = [x for pair in one["plain"] for x in pair]
    assert [x for pair in two["fp32"] for x in pair] == pytest.approx(expected, rel=1e-5)
    assert [x for pair in one["fp32"] for x in pair] == pytest.approx(expected, rel=1e-5)
    # bf16 params/compute, fp32 reduce: close to fp32, not equal; compute really ran in bf16
    bf16 = [x for pair in two["bf16"] for x in pair]
    assert bf16 == pytest.approx(expected, rel=3e-2)
    assert bf16 != pytest.approx(expected, rel=1e-6)
    assert two["bf16_logits_dtype"] == "torch.bfloat16" and two["bf16_param_dtype"] == "torch.float32"
    # the looped block is gathered once per step whatever the depth (kept from forward into backward);
    # FSDP2's default would gather it twice; its gradient is reduce-scattered once per step
    for loops in (1, LOOPS):
        assert two[f"kept_{loops}"]["all_gather"] == two["expected_kept"]
        assert two[f"reshard_{loops}"]["all_gather"] == two["expected_reshard"]
        assert two[f"kept_{loops}"]["reduce_scatter"] == two["expected_reduce_scatter"]


@pytest.mark.slow
def test_expert_parallel_2_ranks_x_4_experts_gives_the_one_process_losses_and_gradients(tmp_path):
    one = _torchrun(1, "ep", tmp_path / "one")
    two = _torchrun(2, "ep", tmp_path / "two", "2")
    assert two["local_experts"] == 4
    expected = [x for pair in one["none"] for x in pair]
    assert [x for pair in two["none"] for x in pair] == pytest.approx(expected, rel=1e-5)
    # EP + bf16: experts compute in bf16 on fp32 master weights, their gradients reach the weights in fp32;
    # (loss, grad norm) within 3% of fp32 (the FSDP2 bf16 tolerance above) but really not fp32
    bf16 = [x for pair in two["bf16"] for x in pair]
    assert all(math.isfinite(x) for x in bf16)
    assert bf16 == pytest.approx(expected, rel=3e-2)
    assert bf16 != pytest.approx(expected, rel=1e-6)
    assert two["bf16_dtypes"] == {
        "rows_in": "torch.bfloat16",
        "rows_out": "torch.bfloat16",
        "weight": "torch.float32",
        "grad": "torch.float32",
        "matmul": "torch.bfloat16",
    }


@pytest.mark.slow
def test_expert_parallel_over_part_of_the_ranks_composes_with_fsdp(tmp_path):
    """4 ranks = 2 (data-parallel) x 2 (expert-parallel): tokens travel inside each ep pair only, the expert
    replicas' gradients are summed over the dp pair; losses and gradient norms equal one process."""
    one = _torchrun(1, "ep", tmp_path / "one")
    four = _torchrun(4, "ep", tmp_path / "four", "2")
    assert four["local_experts"] == 4 and four["mesh"] == [2, 2]
    expected = [x for pair in one["none"] for x in pair]
    assert [x for pair in four["none"] for x in pair] == pytest.approx(expected, rel=1e-5)
    # the two dp rows hold identical expert replicas after the steps (their gradients were averaged)
    assert four["replicas_equal"]


@pytest.mark.slow
def test_sharded_checkpoint_resumes_on_another_world_size_and_converts_to_one_file(tmp_path):
    saved = _torchrun(2, "save", tmp_path)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    for world in (1, 3):
        resumed = _torchrun(world, "resume", tmp_path, str(world))
        flat = [x for pair in resumed["losses"] for x in pair]  # (loss, grad norm) per step
        assert flat == pytest.approx([x for pair in saved["losses"][2:] for x in pair], rel=1e-5), world
    # the single-file form of the sharded checkpoint holds exactly the full state rank 0 gathered
    import torch

    from mythos.model.checkpoint import load_checkpoint
    from mythos.train.dcp import to_single_file

    out = to_single_file(tmp_path / "ckpt", tmp_path / "single")
    model = load_checkpoint(out)
    full = torch.load(tmp_path / "full.pt")
    state = model.state_dict()
    assert set(full) <= set(state)
    for name, tensor in full.items():
        assert torch.equal(state[name], tensor), name


@pytest.mark.slow
def test_mythos_train_sharded_checkpoints_resume_on_one_process_and_unshard(tmp_path):
    """`mythos train --parallel fsdp --sharded-checkpoints` on 2 ranks, stopped after 2 steps, resumed by ONE
    process at the same global batch: the same curve as one uninterrupted process; then unsharded to one file."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = [sys.executable, "-m", "mythos", "train", *TRAIN_ARGS]
    single = tmp_path / "single"
    subprocess.run([*train, "--out", str(single), "--batch-size", "8"], check=True, timeout=300, env=env)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
    ]
    cmd += ["--master_port", str(_free_port()), "-m", "mythos", "train", *TRAIN_ARGS, "--out", str(run)]
    cmd += ["--batch-size", "4", "--parallel", "fsdp", "--sharded-checkpoints", "--stop-after", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    shards = sorted(p.name for p in (run / "sharded" / "step_00000002").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    resume = [
        *cmd[:4],
        "1",
        *cmd[5:8],
        str(_free_port()),
        "-m",
        "mythos",
        "train",
        *TRAIN_ARGS,
        "--out",
        str(run),
    ]
    resume += ["--batch-size", "8", "--parallel", "fsdp", "--sharded-checkpoints"]  # world size 1 (torchrun)
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout + done.stderr
    assert _losses(run) == pytest.approx(_losses(single), rel=1e-5)
    assert len(_losses(run)) == 4
    out = tmp_path / "single_file"
    done = subprocess.run(
        [sys.executable, "-m", "mythos", "model", "unshard", str(run), str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    from mythos.model.checkpoint import load_checkpoint

    assert load_checkpoint(out).cfg.dim == 32


@pytest.mark.slow
def test_mythos_train_expert_parallel_matches_one_process_through_a_checkpoint(tmp_path):
    """`mythos train --parallel fsdp --expert-parallel 2` (2 ranks x 4 experts), stopped after 2 steps and
    resumed from its (gathered) checkpoint: the single-process curve."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*TRAIN_ARGS, "--set", "n_experts=8"]
    single = tmp_path / "single"
    subprocess.run(
        [sys.executable, "-m", "mythos", "train", *args, "--out", str(single), "--batch-size", "8"],
        check=True,
        timeout=300,
        env=env,
    )
    run = tmp_path / "ep"
    for extra in (["--stop-after", "2"], []):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr"]
        cmd += [
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "mythos",
            "train",
            *args,
            "--out",
            str(run),
        ]
        cmd += ["--batch-size", "4", "--parallel", "fsdp", "--expert-parallel", "2", *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    assert _losses(run) == pytest.approx(_losses(single), rel=1e-5)
    # the gathered checkpoint holds whole expert tensors (the DTensor shards gathered), not rank 0's group
    from mythos.model.checkpoint import load_checkpoint

    experts = load_checkpoint(run / "checkpoints" / "step_00000004").recurrent.block.ffn.experts
    assert experts.w_gate_up.shape[0] == 8


def _mythos_train(nproc: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`mythos train ARGS` under torchrun with ``nproc`` processes (0: a plain process, no torchrun)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    cmd = [*(launch if nproc else [sys.executable]), "-m", "mythos", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_sharded_dp_x_ep_run_resumes_without_ep_and_refuses_another_model(tmp_path):
    """`--expert-parallel 2` on 4 ranks (2 dp x 2 ep) with sharded checkpoints, stopped after 2 steps, resumed
    on 2 ranks with plain FSDP2 (DCP reshards the experts): the one-process curve at the same global batch.
    A resume that describes another model, an ep the ranks cannot form, or a sharded run resumed without
    --sharded-checkpoints is refused with one line naming the field (exit 2)."""
    args = [*TRAIN_ARGS, "--set", "n_experts=8"]
    single = tmp_path / "single"
    done = _mythos_train(0, *args, "--out", str(single), "--batch-size", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    sharded = [*args, "--out", str(run), "--parallel", "fsdp", "--sharded-checkpoints"]
    done = _mythos_train(4, *sharded, "--batch-size", "2", "--expert-parallel", "2", "--stop-after", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((run / "sharded" / "step_00000002").glob("*.distcp"))) == 4
    assert (run / "sharded" / "step_00000002" / "train_config.json").is_file()
    one_rank = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}
    refusals = {
        "model_overrides": (["--set", "dim=48", "--batch-size", "8"], one_rank),
        "expert_parallel": (["--batch-size", "4", "--expert-parallel", "3"], {**one_rank, "WORLD_SIZE": "2"}),
    }
    for field, (extra, env) in refusals.items():
        bad = _mythos_train(0, *sharded, *extra, env=env)
        assert bad.returncode == 2, (field, bad.stderr[-2000:])
        assert field in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    bad = _mythos_train(0, *args, "--out", str(run), "--batch-size", "8")
    assert bad.returncode == 2 and "sharded_checkpoints" in bad.stderr, bad.stderr[-2000:]
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    done = _mythos_train(2, *sharded, "--batch-size", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout + done.stderr
    assert _losses(run) == pytest.approx(_losses(single), rel=1e-5)
    assert len(_losses(run)) == 4


def test_a_sharded_resume_on_other_ranks_keeps_the_global_batch_not_the_per_rank_one(tmp_path):
    """A sharded checkpoint written by 4 ranks x batch 2 resumes on 2 ranks x 4 (announced) but not on
    2 ranks x 2 (another global batch: the schedule changed, refused naming batch_size)."""
    from mythos.train.config import TrainConfig
    from mythos.train.runfolder import RunMismatch, check_resume

    ckpt = tmp_path / "sharded" / "step_00000002"
    ckpt.mkdir(parents=True)
    first = TrainConfig(out=str(tmp_path), task="binding", parallel="fsdp", batch_size=2)
    (ckpt / "train_config.json").write_text(first.to_json())
    (ckpt / "train_state.json").write_text(json.dumps({"world_size": 4, "step": 2}))
    notes = check_resume(dataclasses.replace(first, batch_size=4, expert_parallel=2), ckpt, world=2)
    assert notes == ["batch_size 2 x 4 ranks -> 4 x 2: the same global batch"]
    with pytest.raises(RunMismatch, match="batch_size: 2 -> 4"):
        check_resume(dataclasses.replace(first, batch_size=4), ckpt, world=4)
    with pytest.raises(RunMismatch, match="model_overrides"):
        check_resume(dataclasses.replace(first, model_overrides={"dim": 48}), ckpt, world=4)


def test_a_sharded_checkpoint_that_does_not_fit_the_model_is_a_one_line_value_error(tmp_path):
    from mythos.train.dcp import load_sharded, save_sharded

    model = _tiny()
    save_sharded(tmp_path / "ckpt", model, None, model.cfg.to_dict(), {"step": 1})
    with pytest.raises(ValueError, match="does not fit this model") as caught:
        load_sharded(tmp_path / "ckpt", _tiny(dim=48, n_heads=4))
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_peak_memory_per_rank_of_a_scaled_down_10b_falls_as_ranks_are_added(tmp_path):
    """FSDP2 on 1, 2, 4 ranks, then expert parallelism on 4 ranks (2 dp x 2 ep, and 4 ep): the experts are
    no longer gathered whole on every rank, so EP holds less per rank than FSDP2 alone at the same world."""
    layouts = {"1": (1, "1"), "2": (2, "1"), "4": (4, "1"), "4 ep2": (4, "2"), "4 ep4": (4, "4")}
    peaks = {
        name: _torchrun(world, "memory", tmp_path / name.replace(" ", "_"), ep)["peak_mb"]
        for name, (world, ep) in layouts.items()
    }
    (tmp_path / "peaks.json").write_text(json.dumps(peaks))
    print("peak RSS growth per rank (MB):", {k: [round(x) for x in v] for k, v in peaks.items()})
    # What does not shrink with FSDP2 alone: the looped block kept gathered (fp32 here: its 34.6 M expert
    # parameters + their unsharded grads), activations, the process's own allocations after the baseline
    worst = {name: max(p) for name, p in peaks.items()}
    assert worst["2"] < 0.9 * worst["1"]
    assert worst["4"] < 0.9 * worst["2"]
    assert worst["4 ep4"] < 0.9 * worst["4"]
    assert worst["4 ep4"] < worst["4 ep2"]


def test_mixed_precision_needs_fsdp_with_a_clear_error():
    from mythos.train.config import TrainConfig, TrainConfigError

    with pytest.raises(TrainConfigError, match="mixed_precision"):
        TrainConfig(task="binding", parallel="ddp", mixed_precision="bf16")
    with pytest.raises(TrainConfigError, match="mixed_precision"):
        TrainConfig(task="binding", parallel="fsdp", mixed_precision="fp8")
    with pytest.raises(TrainConfigError, match="expert_parallel"):
        TrainConfig(task="binding", parallel="ddp", expert_parallel=2)
    with pytest.raises(TrainConfigError, match="sharded_checkpoints"):
        TrainConfig(task="binding", parallel="ddp", sharded_checkpoints=True)


def test_the_cli_names_the_mixed_precision_flag(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mythos",
            "train",
            "--task",
            "binding",
            "--out",
            str(tmp_path),
            "--mixed-precision",
            "bf16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "mixed_precision" in done.stderr and "Traceback" not in done.stderr


def test_converter_refuses_a_folder_that_is_not_a_sharded_checkpoint(tmp_path):
    from mythos.train.dcp import to_single_file

    with pytest.raises(FileNotFoundError, match="not a sharded checkpoint"):
        to_single_file(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------------------------------------ worker


def _batch(step: int, rank: int, world: int, vocab: int, batch: int = GLOBAL_BATCH):
    import torch

    gen = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(0, vocab, (batch, SEQ + 1), generator=gen)
    rows = batch // world
    part = ids[rank * rows : (rank + 1) * rows]
    return part[:, :-1], part[:, 1:]


def _train_step(
    model, optimizer, step: int, rank: int, world: int, loops: int = LOOPS, batch: int = GLOBAL_BATCH
):
    """One AdamW step on this rank's rows of the global batch: (mean loss over ranks, gradient norm)."""
    import torch.distributed as dist
    import torch.nn.functional as F

    inputs, targets = _batch(step, rank, world, model.cfg.vocab_size, batch)
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs, n_loops=loops)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()
    grad_norm = _grad_norm(model, world)
    optimizer.step()
    value = loss.detach().clone()
    if dist.is_initialized() and world > 1:
        dist.all_reduce(value)
        value /= world
    return float(value), float(grad_norm)


def _grad_norm(model, world: int) -> float:
    """Global gradient norm: sharded (DTensor) grads gathered; plain grads on several ranks are the rank-local
    experts of expert parallelism, summed over ranks."""
    import torch
    import torch.distributed as dist

    sharded = torch.zeros(())
    local = torch.zeros(())
    for p in model.parameters():
        if p.grad is None:
            continue
        if hasattr(p.grad, "full_tensor"):
            sharded += p.grad.full_tensor().float().pow(2).sum()
        else:
            local += p.grad.float().pow(2).sum()
    if world > 1:
        dist.all_reduce(local)
    return float((sharded + local).sqrt())


def _watch_experts(experts) -> dict:
    """Record the dtypes the expert-parallel module sees: rows in and out, and what its matmuls run in."""
    import mythos.train.parallel_ep as ep_module

    seen: dict = {}
    experts.register_forward_hook(
        lambda _m, args, out: seen.update(rows_in=str(args[0].dtype), rows_out=str(out.dtype))
    )
    original = ep_module.grouped_matmul

    def grouped(x, weight, offsets):
        seen["matmul"] = str(weight.dtype)
        return original(x, weight, offsets)

    ep_module.grouped_matmul = grouped
    return seen


def _tiny(seed: int = 0, **overrides):
    import torch

    from mythos.model import Mythos, get_preset

    torch.manual_seed(seed)
    return Mythos(get_preset("tiny", act_early_exit=False, **overrides))


def _adam(model):
    import torch

    return torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)


def _worker(mode: str, out: Path, extra: list[str]) -> None:
    import functools
    import resource

    import torch
    import torch.distributed as dist

    from mythos.train.dcp import load_sharded, save_sharded
    from mythos.train.parallel import count_collectives, shard_model

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result: dict = {}
    if mode == "parity":
        plain = _tiny()
        opt = _adam(plain)
        result["plain"] = [_train_step(plain, opt, s, 0, 1) for s in range(3)] if world == 1 else None
        for precision in ("none", "bf16"):
            model = shard_model(_tiny(), mixed_precision=precision)
            opt = _adam(model)
            steps = [_train_step(model, opt, s, rank, world) for s in range(3)]
            result["fp32" if precision == "none" else "bf16"] = steps
            if precision == "bf16":
                result["bf16_param_dtype"] = str(next(model.parameters()).dtype)  # the sharded fp32 master
                result["bf16_logits_dtype"] = str(model(_batch(0, rank, world, 256)[0], n_loops=1).dtype)
        # all-gathers and reduce-scatters of one step at depth 1 and at depth LOOPS, the looped block kept
        # gathered from its forward into its backward vs FSDP2's default (freed after forward, gathered again)
        for name, reshard in (("kept", False), ("reshard", True)):
            model = shard_model(_tiny(), reshard_looped=reshard)
            opt = _adam(model)
            for loops in (1, LOOPS):
                step = functools.partial(_train_step, model, opt, 0, rank, world, loops)
                result[f"{name}_{loops}"] = dict(count_collectives(step)[1])
        n_dense = model.cfg.prelude_layers + model.cfg.coda_layers
        result["expected_kept"] = 1 + 2 * n_dense + 1
        result["expected_reshard"] = 1 + 2 * n_dense + 2
        result["expected_reduce_scatter"] = 1 + n_dense + 1
    elif mode == "ep":
        # 8 experts: 4 per ep rank with ep=2 (extra[0]); FSDP2 shards the rest; one process runs the plain model
        train = functools.partial(_train_step, rank=rank, world=world, batch=EP_BATCH)
        if world == 1:
            model = _tiny(n_experts=8)
            opt = _adam(model)
            result["none"] = [train(model, opt, s) for s in range(3)]
        for precision in ("none", "bf16") if world > 1 else ():
            model = shard_model(_tiny(n_experts=8), mixed_precision=precision, expert_parallel=int(extra[0]))
            experts = model.recurrent.block.ffn.experts
            result["local_experts"] = experts.w_gate_up.to_local().shape[0]
            result["mesh"] = list(experts.w_gate_up.device_mesh.shape)
            seen = _watch_experts(experts) if precision == "bf16" else {}
            opt = _adam(model)
            result[precision] = [train(model, opt, s) for s in range(3)]
            if precision == "bf16":
                seen.update(weight=str(experts.w_gate_up.dtype), grad=str(experts.w_gate_up.grad.dtype))
                result["bf16_dtypes"] = seen
            else:  # every dp row must hold the same expert replica
                local = experts.w_gate_up.to_local().detach().clone()
                rows = [torch.empty_like(local) for _ in range(world)]
                dist.all_gather(rows, local)
                ep = int(extra[0])
                result["replicas_equal"] = all(torch.equal(rows[r], rows[r % ep]) for r in range(world))
    elif mode == "save":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        model = shard_model(_tiny())
        opt = _adam(model)
        losses = [_train_step(model, opt, s, rank, world) for s in range(2)]
        save_sharded(out / "ckpt", model, opt, model.cfg.to_dict(), {"step": 2})
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save(full, out / "full.pt")
        losses += [_train_step(model, opt, s, rank, world) for s in range(2, 4)]
        result["losses"] = losses
    elif mode == "resume":
        model = shard_model(_tiny(seed=123))  # other weights: the checkpoint must replace them all
        opt = _adam(model)
        state = load_sharded(out / "ckpt", model, opt)
        result["losses"] = [_train_step(model, opt, s, rank, world) for s in range(state["step"], 4)]
    elif mode == "memory":
        import torch.nn.functional as F

        from mythos.model import Mythos, get_preset
        from mythos.train.distributed import clip_grad_norm

        def rss() -> int:
            return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

        # the 10b preset's structure (2 prelude + 2 coda blocks, 128 experts top-4 + 2 shared, MLA) at small
        # widths; built on the meta device and sharded before any storage exists, as a 10B run must be
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
        base = rss()
        with torch.device("meta"):
            model = Mythos(cfg)
        shard_model(model, expert_parallel=int(extra[0]) if extra else 1)
        model.to_empty(device="cpu")
        torch.manual_seed(rank)
        with torch.no_grad():
            for p in model.parameters():
                p.to_local().normal_(0.0, 0.02)
            for b in model.buffers():
                b.zero_()
        opt = _adam(model)
        for s in range(2):  # the trainer's step: its gradient norm, which gathers no whole tensor
            inputs, targets = _batch(s, rank, world, cfg.vocab_size)
            opt.zero_grad(set_to_none=True)
            logits = model(inputs, n_loops=2)
            F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
            clip_grad_norm(model.parameters(), 1.0)
            opt.step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        peaks = [None] * world
        dist.all_gather_object(peaks, peak / 1e6)
        result["peak_mb"] = peaks
        result["params"] = sum(p.numel() for p in model.parameters())
    else:
        raise SystemExit(f"unknown mode {mode}")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{mode}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
