"""Pure bf16 and fp16 models run forward, backward and generate (the reference fails in bf16)."""

import importlib

import pytest
import torch

from mythos.model import Mythos, generate, get_preset


@pytest.mark.parametrize("preset", ["tiny", "tiny-gqa"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_backward_generate(preset, dtype):
    torch.manual_seed(0)
    model = Mythos(get_preset(preset)).to(dtype)
    assert model.recurrent.block.ffn.router.bias.dtype == torch.float32  # kept fp32 for its small steps
    ids = torch.randint(0, 256, (2, 8))
    out = model(ids, n_loops=2, return_aux=True)
    assert out.logits.dtype == dtype and torch.isfinite(out.logits).all()
    loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids.flatten())
    (loss + out.aux.ponder_cost).backward()
    assert all(
        p.grad is not None and p.grad.dtype == dtype and torch.isfinite(p.grad).all()
        for p in model.parameters()
    )
    assert (model.recurrent.injection.get_A() < 1).all()
    new = generate(model, ids[:1, :4], max_new_tokens=3, temperature=0.8, top_k=20, seed=0)
    assert new.shape == (1, 3)


@pytest.mark.parametrize("preset", ["tiny", "tiny-gqa"])
def test_fp32_model_trains_under_cpu_autocast(preset):
    """Mixed precision (the trainer's bf16 on CPU): fp32 weights, bf16 matmuls, fp32 gradients, close logits."""
    torch.manual_seed(0)
    model = Mythos(get_preset(preset))
    ids = torch.randint(0, 256, (2, 8))
    with torch.no_grad():
        exact = model(ids, n_loops=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids, n_loops=2)
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten())
    loss.backward()
    assert all(
        p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        for p in model.parameters()
    )
    assert (logits.float() - exact).abs().max() < 0.1


def test_bf16_close_to_fp32():
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny")).eval()
    ids = torch.randint(0, 256, (1, 8))
    with torch.no_grad():
        full = model(ids, n_loops=2)
        half = model.to(torch.bfloat16)(ids, n_loops=2).float()
    assert (full - half).abs().max() < 0.05 * full.abs().max()


@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_reference_fails_in_bf16():
    """Documents the reference bug our mask handling avoids."""
    main = importlib.import_module("open_mythos.main")
    cfg = main.MythosConfig(
        vocab_size=64, dim=32, n_heads=4, n_kv_heads=2, max_seq_len=32, max_loop_iters=2, prelude_layers=1,
        coda_layers=1, attn_type="gqa", n_experts=4, n_shared_experts=1, n_experts_per_tok=2, expert_dim=8,
        lora_rank=2,
    )  # fmt: skip
    ref = main.OpenMythos(cfg).to(torch.bfloat16)
    with pytest.raises(RuntimeError):
        ref(torch.randint(0, 64, (1, 6)))
