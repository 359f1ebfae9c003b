"""Static KV cache: chunked prefill equals full prefill, length limits, MLA cache size vs the reference."""

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.model import CacheFullError, Mythos, get_preset


@pytest.fixture(scope="module", params=["tiny", "tiny-gqa"])
def model(request):
    torch.manual_seed(0)
    return Mythos(get_preset(request.param)).eval()


@pytest.mark.parametrize("chunks", [(12,), (5, 7), (1, 4, 1, 6), (1,) * 12])
def test_chunked_prefill_equals_full_prefill(model, chunks):
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids, n_loops=3)
        cache = model.new_cache(batch_size=2, max_len=16, n_loops=3)
        pieces, start = [], 0
        for size in chunks:
            pieces.append(model(ids[:, start : start + size], cache=cache))
            start += size
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)
    assert cache.pos == 12


def test_cache_overflow_and_max_seq_len(model):
    cache = model.new_cache(batch_size=1, max_len=6, n_loops=2)
    with torch.no_grad():
        model(torch.zeros(1, 4, dtype=torch.long), cache=cache)
        with pytest.raises(CacheFullError, match="max_len=6"):
            model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
        assert cache.pos == 4  # a refused call leaves the cache untouched
        model(torch.zeros(1, 2, dtype=torch.long), cache=cache)
    with pytest.raises(CacheFullError, match="max_seq_len"):
        model(torch.zeros(1, model.cfg.max_seq_len + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        model.new_cache(max_len=model.cfg.max_seq_len + 1)


def test_cache_loop_count_and_batch_must_match(model):
    cache = model.new_cache(batch_size=1, max_len=8, n_loops=2)
    with pytest.raises(ValueError, match="n_loops"):
        model(torch.zeros(1, 2, dtype=torch.long), cache=cache, n_loops=3)
    with pytest.raises(ValueError, match="batch"):
        model(torch.zeros(2, 2, dtype=torch.long), cache=cache)


def test_one_slot_per_layer_and_loop(model):
    cfg = model.cfg
    cache = model.new_cache(batch_size=1, max_len=8, n_loops=5)
    assert len(cache.slots) == cfg.prelude_layers + 5 + cfg.coda_layers


def test_chunked_prefill_with_gradients(model):
    """Training through a cached chunk: gradients reach the current chunk's keys."""
    model.train()
    try:
        cache = model.new_cache(batch_size=1, max_len=8, n_loops=2)
        with torch.no_grad():
            model(torch.randint(0, 256, (1, 4)), cache=cache)
        model(torch.randint(0, 256, (1, 3)), cache=cache).square().mean().backward()
        assert model.prelude[0].attn.wo.weight.grad.abs().sum() > 0
    finally:
        model.zero_grad()
        model.eval()


def test_mla_cache_at_most_reference_over_2_4():
    """Measure the reference's real cache per token and compare with ours at the issue's small config."""
    main = importlib.import_module("open_mythos.main")
    cfg = get_preset("small")
    ref_cfg = main.MythosConfig(
        **{k: getattr(cfg, k) for k in ("vocab_size", "dim", "n_heads", "n_kv_heads", "max_loop_iters",
                                         "prelude_layers", "coda_layers", "attn_type", "kv_lora_rank",
                                         "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim",
                                         "n_experts", "n_shared_experts", "n_experts_per_tok", "expert_dim",
                                         "lora_rank")},
        max_seq_len=64,
    )  # fmt: skip
    ref = main.OpenMythos(ref_cfg).eval()
    kv: dict = {}
    tokens = 5
    with torch.no_grad():
        ref(torch.zeros(1, tokens, dtype=torch.long), n_loops=cfg.max_loop_iters, kv_cache=kv)
    ref_bytes = sum(t.numel() * t.element_size() for entry in kv.values() for t in entry.values()) / tokens
    ours = Mythos(cfg.replace(max_seq_len=64)).new_cache(batch_size=1, max_len=64)
    assert ours.bytes_per_token * 2.4 <= ref_bytes


_PROPERTY_MODEL = {}


def _tiny_model():
    if "m" not in _PROPERTY_MODEL:
        torch.manual_seed(1)
        _PROPERTY_MODEL["m"] = Mythos(get_preset("tiny-gqa")).eval()
    return _PROPERTY_MODEL["m"]


@settings(max_examples=10, deadline=None)
@given(cuts=st.lists(st.integers(1, 9), min_size=1, max_size=4, unique=True), n_loops=st.integers(1, 3))
def test_any_chunking_equals_full_prefill(cuts, n_loops):
    model = _tiny_model()
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(5))
    bounds = [0, *sorted(cuts), 10]
    with torch.no_grad():
        full = model(ids, n_loops=n_loops)
        cache = model.new_cache(batch_size=1, max_len=10, n_loops=n_loops)
        pieces = [model(ids[:, a:b], cache=cache) for a, b in zip(bounds, bounds[1:], strict=False)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)


def test_no_float_buffers_for_dtype_casts_to_corrupt():
    """RoPE has no buffers; the only buffer is the router bias, which stays fp32 under .to(bf16)."""
    model = Mythos(get_preset("tiny")).to(torch.bfloat16)
    assert [(n, b.dtype) for n, b in model.named_buffers()] == [
        ("recurrent.block.ffn.router.bias", torch.float32)
    ]
