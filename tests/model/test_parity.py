"""Numerical parity with the open-mythos 0.5.0 reference (fp32, within 1e-5): prefill and cached decode."""

import pytest
import torch
from open_mythos.main import MythosConfig as RefConfig
from open_mythos.main import OpenMythos

from mythos.model import from_open_mythos

TOL = 1e-5


def build_reference(attn_type: str, slow_halting: bool, seed: int = 0) -> OpenMythos:
    torch.manual_seed(seed)
    cfg = RefConfig(
        vocab_size=128, dim=64, n_heads=4, n_kv_heads=2, max_seq_len=64, max_loop_iters=4,
        prelude_layers=1, coda_layers=2, attn_type=attn_type, kv_lora_rank=16, q_lora_rank=32,
        qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, n_experts=4, n_shared_experts=2,
        n_experts_per_tok=2, expert_dim=16, lora_rank=4,
    )  # fmt: skip
    ref = OpenMythos(cfg).eval()
    with torch.no_grad():
        # perturb the buffers/params the reference initialises to constants, so they are really compared
        ref.recurrent.block.ffn.router_bias.normal_(0, 0.05)
        ref.recurrent.injection.log_A.normal_(0, 0.5)
        ref.recurrent.injection.B.normal_(0.1, 0.05)
        if slow_halting:  # p ~ 0.02: no position halts, every loop contributes
            ref.recurrent.act.halt.bias.fill_(-4.0)
    return ref


CASES = [(a, s) for a in ("mla", "gqa") for s in (False, True)]


@pytest.mark.parametrize(("attn_type", "slow_halting"), CASES)
def test_prefill_parity(attn_type, slow_halting):
    ref = build_reference(attn_type, slow_halting)
    ours = from_open_mythos(ref).eval()
    assert ours.cfg.reference_compat
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for n_loops in (1, 2, 4, 6):
            expected, got = ref(ids, n_loops=n_loops), ours(ids, n_loops=n_loops)
            assert got.shape == expected.shape
            assert (expected - got).abs().max().item() < TOL, n_loops


@pytest.mark.parametrize(("attn_type", "slow_halting"), CASES)
def test_decode_parity_with_cache(attn_type, slow_halting):
    ref = build_reference(attn_type, slow_halting, seed=3)
    ours = from_open_mythos(ref).eval()
    ids = torch.randint(0, 128, (2, 11), generator=torch.Generator().manual_seed(2))
    prompt = 6
    for n_loops in (1, 3, 5):
        ref_cache: dict = {}
        cache = ours.new_cache(batch_size=2, max_len=16, n_loops=n_loops)
        with torch.no_grad():
            expected = ref(ids[:, :prompt], n_loops=n_loops, kv_cache=ref_cache, start_pos=0)
            got = ours(ids[:, :prompt], cache=cache)
            assert (expected - got).abs().max().item() < TOL
            for pos in range(prompt, ids.shape[1]):
                step = ids[:, pos : pos + 1]
                expected = ref(step, n_loops=n_loops, kv_cache=ref_cache, start_pos=pos)
                got = ours(step, cache=cache)
                assert (expected - got).abs().max().item() < TOL, (n_loops, pos)
        assert cache.pos == ids.shape[1]


def test_parity_gradients_match():
    """Same loss -> same gradients on shared weights (training parity, not just inference)."""
    ref = build_reference("mla", slow_halting=True)
    ours = from_open_mythos(ref)
    ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(4))
    ref(ids, n_loops=3).logsumexp(-1).mean().backward()
    ours(ids, n_loops=3).logsumexp(-1).mean().backward()
    torch.testing.assert_close(ours.embed.weight.grad, ref.embed.weight.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(
        ours.recurrent.injection.log_A.grad, ref.recurrent.injection.log_A.grad, atol=1e-6, rtol=1e-4
    )
    torch.testing.assert_close(
        ours.recurrent.act.halt.weight.grad, ref.recurrent.act.halt.weight.grad, atol=1e-6, rtol=1e-4
    )
