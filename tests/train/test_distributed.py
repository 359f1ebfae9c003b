"""torchrun with 2 CPU processes (gloo): DDP and FSDP2 give the single-process losses at the same global batch."""

import os
import subprocess

import pytest

from .helpers import DISTRIBUTED, free_port, losses, one_process_losses, torchrun


def _torchrun(out, mode, *extra):
    cmd = torchrun(
        "mythos", "train", "--out", str(out), *DISTRIBUTED, "--batch-size", "4", "--parallel", mode, *extra
    )
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_ddp_and_fsdp_match_one_process_at_the_same_global_batch(tmp_path):
    expected = one_process_losses(tmp_path / "single")
    _torchrun(tmp_path / "ddp", "ddp")
    assert losses(tmp_path / "ddp") == pytest.approx(expected, rel=1e-5)
    # FSDP2, interrupted after 2 steps and resumed from its checkpoint: still the same curve
    _torchrun(tmp_path / "fsdp", "fsdp", "--stop-after", "2")
    resumed = _torchrun(tmp_path / "fsdp", "fsdp")
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert losses(tmp_path / "fsdp") == pytest.approx(expected, rel=1e-5)


def test_wrapping_for_several_ranks_turns_off_the_data_dependent_early_exit():
    """A rank whose positions all halted would skip loops (and their collectives) that the others run: deadlock."""
    import torch.distributed as dist

    from mythos.model import Mythos, get_preset
    from mythos.train.distributed import DistInfo, wrap

    model = Mythos(get_preset("tiny", act=True, act_early_exit=True))
    assert wrap(model, "auto", DistInfo(world=1)) is model and model.cfg.act_early_exit  # one process: kept
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        wrapped = wrap(model, "ddp", DistInfo(world=2))  # a real DDP wrapper; the info says several ranks
        assert not model.recurrent.cfg.act_early_exit  # the loop runs every loop on every rank
        assert model.cfg.act_early_exit  # the saved config.json keeps what the user asked for
        assert wrapped.module is model
    finally:
        dist.destroy_process_group()
