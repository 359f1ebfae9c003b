"""One way to find a model's files: a checkpoint directory, or a training run folder's newest checkpoint."""

import pytest
import torch

from mythos.model import Mythos, get_preset, save_checkpoint
from mythos.model.locate import find_checkpoint


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    for step in (1, 20, 3):
        save_checkpoint(Mythos(get_preset("tiny")), run / "checkpoints" / f"step_{step:08d}")
    (run / "checkpoints" / "step_00000099").mkdir()  # a half-written one: no files, never chosen
    return run


def test_a_checkpoint_directory_is_itself(run_dir):
    ckpt = run_dir / "checkpoints" / "step_00000003"
    assert find_checkpoint(ckpt) == ckpt


def test_a_run_folder_gives_its_newest_complete_checkpoint_or_the_latest_pointer(run_dir):
    assert find_checkpoint(run_dir).name == "step_00000020"
    (run_dir / "checkpoints" / "latest").write_text("step_00000003\n")
    try:
        assert find_checkpoint(run_dir).name == "step_00000003"
    finally:
        (run_dir / "checkpoints" / "latest").unlink()


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        find_checkpoint(tmp_path)


def test_generate_and_serve_load_a_run_folder(run_dir):
    from mythos.infer.cli import load_model

    model, path = load_model(str(run_dir))
    assert path.name == "step_00000020" and isinstance(model, Mythos)
    with pytest.raises(ValueError, match="neither a checkpoint"):
        load_model(str(run_dir / "checkpoints" / "step_00000099"))
