"""Meta-device initialisation (``mythos train --parallel fsdp --meta-init``) and the one init it relies on,
``Mythos.init_weights``. The torchrun tests use gloo on CPU; tests/train/meta_init_worker.py is their worker."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mythos.model import Mythos, get_preset
from mythos.model.recurrent import halting_bias
from mythos.train.config import TrainConfig, TrainConfigError
from mythos.train.meta_init import EXACT_LIMIT

from .helpers import DISTRIBUTED, free_port, losses

WORKER = Path(__file__).with_name("meta_init_worker.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env() -> dict:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
    }


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _worker(nproc: int, mode: str, out: Path, *args: str) -> dict:
    _torchrun(nproc, str(WORKER), mode, str(out), *args)
    return json.loads((out / f"{mode}.json").read_text())


# ------------------------------------------------------------------------------------- one process


@pytest.mark.parametrize(
    "changes", [{}, {"reference_compat": True}, {"attn_type": "gqa", "act": False, "n_shared_experts": 0}]
)
def test_init_weights_reproduces_the_constructor_exactly(changes):
    """The guard against drift: init_weights over a model whose every parameter and buffer was NaN gives the
    constructor's values bit for bit at the same seed, and leaves the generator where the constructor did."""
    cfg = get_preset("tiny", **changes)
    torch.manual_seed(7)
    built = Mythos(cfg).state_dict()
    after_build = torch.get_rng_state()
    model = Mythos(cfg)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.fill_(float("nan"))
    torch.manual_seed(7)
    model.init_weights()
    state = model.state_dict()
    assert sorted(state) == sorted(built)
    for name, tensor in built.items():
        assert torch.equal(state[name], tensor), name  # an entry init_weights missed stays NaN
    assert torch.equal(torch.get_rng_state(), after_build)
    assert model.head.weight is model.embed.weight


def test_a_new_model_starts_from_the_documented_values():
    cfg = get_preset("tiny", max_loop_iters=6)
    torch.manual_seed(0)
    model = Mythos(cfg)
    loop = model.recurrent
    norms = [m.weight for m in model.modules() if type(m).__name__ == "RMSNorm"]
    assert norms and all(torch.equal(w, torch.ones_like(w)) for w in norms)
    assert torch.equal(loop.injection.log_A, torch.zeros(cfg.dim))
    assert torch.equal(loop.injection.log_dt, torch.zeros(1))
    assert torch.equal(loop.injection.B, torch.full((cfg.dim,), 0.1))
    assert torch.equal(loop.block.ffn.router.bias, torch.zeros(cfg.n_experts))
    assert loop.block.ffn.router.bias.dtype == torch.float32
    assert float(loop.act.halt.bias) == pytest.approx(halting_bias(6))
    assert float(loop.act.halt.bias) == pytest.approx(-math.log(5))
    for weight, std in [
        (model.embed.weight, cfg.init_std),
        (model.prelude[0].ffn.w_gate_up.weight, cfg.init_std),
        (loop.block.ffn.experts.w_gate_up, 0.02),
        (loop.block.ffn.router.weight, 0.02),
    ]:
        assert float(weight.std()) == pytest.approx(std, rel=4 / math.sqrt(weight.numel()))  # ~3 sigma
        assert abs(float(weight.mean())) < 4 * std / math.sqrt(weight.numel())
    compat = Mythos(get_preset("tiny", reference_compat=True)).recurrent.act.halt.bias
    assert abs(float(compat)) <= 1 / math.sqrt(cfg.dim)  # nn.Linear's default bias


def test_meta_init_needs_fsdp_with_a_clear_error(tmp_path):
    for parallel in ("auto", "none", "ddp"):
        with pytest.raises(TrainConfigError, match="meta_init"):
            TrainConfig(task="binding", parallel=parallel, meta_init=True)
    assert TrainConfig(task="binding", parallel="fsdp", meta_init=True).meta_init
    done = subprocess.run(
        [sys.executable, "-m", "mythos", "train", "--task", "binding", "--out", str(tmp_path), "--meta-init"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert done.returncode == 2, done.stderr
    assert "meta_init" in done.stderr and "--parallel fsdp" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_one_process_under_fsdp_materialises_the_constructor_values():
    """``--parallel fsdp`` without torchrun leaves the meta model unsharded: materialise it like any model."""
    from mythos.train.meta_init import build_on_meta, materialize

    cfg = get_preset("tiny")
    torch.manual_seed(1)
    expected = Mythos(cfg).state_dict()
    torch.manual_seed(1)
    model = build_on_meta(cfg)
    assert all(p.is_meta for p in model.parameters())
    materialize(model, torch.device("cpu"))
    assert model.head.weight is model.embed.weight
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in expected.items())


# ------------------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_meta_init_gives_the_one_process_values_on_any_mesh(tmp_path):
    """Sharded by FSDP2 on 2 ranks, and by expert parallelism (2) + FSDP2: the gathered weights equal
    ``Mythos(cfg)`` at the same seed, bit for bit, and the generator ends where one process's does."""
    for ep in ("1", "2"):
        result = _worker(2, "values", tmp_path / f"ep{ep}", ep, str(EXACT_LIMIT))
        assert result["keys_equal"] and result["tied"] and result["rng_like_one_process"]
        assert result["differ"] == [], (ep, result["differ"])


@pytest.mark.slow
def test_parameters_above_the_exact_limit_draw_their_shards_apart_with_the_same_statistics(tmp_path):
    """exact_limit=0: every random parameter is drawn shard by shard. Values differ from one process's, their
    statistics do not; no shard repeats another (DTensor's own random ops would repeat them on a CPU mesh);
    deterministic entries (norms, LTI, router bias, halting bias) are exact."""
    result = _worker(2, "values", tmp_path / "apart", "2", "0")
    assert result["keys_equal"] and result["tied"]
    assert result["repeated_halves"] == []
    for name, ((mean, std, n), (got_mean, got_std, _)) in result["stats"].items():
        if name in result["differ"]:
            assert std > 1e-6 and n >= 12, name  # only random entries may differ
            if n >= 1000:
                assert got_std == pytest.approx(std, rel=0.1), name
                assert abs(got_mean - mean) < 0.1 * std, name
        else:
            assert (got_mean, got_std) == (mean, std), name
    random = {k for k, (ref, _) in result["stats"].items() if ref[1] > 1e-6}  # constants: std ~1e-9
    assert set(result["differ"]) == random  # really drawn apart, not copied from one process's values
    assert "recurrent.act.halt.bias" not in result["differ"]


@pytest.mark.slow
def test_mythos_train_meta_init_matches_one_process_through_a_resume(tmp_path):
    """`mythos train --parallel fsdp --meta-init` on 2 ranks, stopped after 2 steps and resumed (weights
    loaded after to_empty): the one-process curve; the same with expert parallelism and sharded checkpoints."""
    single = tmp_path / "single"
    one = [sys.executable, "-m", "mythos", "train", *DISTRIBUTED, "--batch-size", "8", "--out", str(single)]
    subprocess.run(one, check=True, capture_output=True, timeout=300, env=_env())
    expected = losses(single)
    run = tmp_path / "meta"
    for extra in (["--stop-after", "2"], []):
        _torchrun(2, "-m", "mythos", "train", *DISTRIBUTED, "--batch-size", "4", "--out", str(run),
                  "--parallel", "fsdp", "--meta-init", *extra)  # fmt: skip
    assert losses(run) == pytest.approx(expected, rel=1e-5)
    assert len(losses(run)) == 4 and losses(run)[-1] < losses(run)[0]

    moe = [*DISTRIBUTED, "--set", "n_experts=8"]
    single_moe = tmp_path / "single_moe"
    one = [sys.executable, "-m", "mythos", "train", *moe, "--batch-size", "8", "--out", str(single_moe)]
    subprocess.run(one, check=True, capture_output=True, timeout=300, env=_env())
    run = tmp_path / "meta_ep"
    for extra in (["--stop-after", "2"], []):
        done = _torchrun(2, "-m", "mythos", "train", *moe, "--batch-size", "4", "--out", str(run),
                         "--parallel", "fsdp", "--meta-init", "--expert-parallel", "2",
                         "--sharded-checkpoints", *extra)  # fmt: skip
    assert "resumed from" in done.stdout + done.stderr
    assert losses(run) == pytest.approx(losses(single_moe), rel=1e-5)


@pytest.mark.slow
def test_meta_init_lowers_the_peak_memory_at_start(tmp_path):
    """The 10b preset's structure at small widths (46.5 M parameters, 186 MB in fp32) on 2 ranks: each rank's
    peak RSS growth while its model is built and sharded, whole-then-sharded vs meta-initialised."""
    full = _worker(2, "memory", tmp_path / "full", "full")
    meta = _worker(2, "memory", tmp_path / "meta", "meta")
    print("peak RSS growth per rank (MB): full", full["peak_mb"], "meta", meta["peak_mb"])
    model_mb = full["params"] * 4 / 1e6
    assert all(peak > model_mb for peak in full["peak_mb"])  # every rank held the whole model
    assert max(meta["peak_mb"]) < 0.8 * min(full["peak_mb"])
    assert max(meta["peak_mb"]) < model_mb  # no rank held the whole model
