"""The parameter and KV-cache formulas against real models: ours (component by component) and the reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.model import Mythos, MythosConfig, get_preset
from mythos.model.params import (
    component_params,
    count_params,
    kv_cache_bytes_per_token,
    kv_cache_elements_per_layer,
)

BASE = dict(
    vocab_size=97, dim=32, n_heads=4, n_kv_heads=2, max_seq_len=64, max_loop_iters=3, prelude_layers=1,
    coda_layers=1, kv_lora_rank=8, q_lora_rank=12, qk_rope_head_dim=4, qk_nope_head_dim=6, v_head_dim=10,
    n_experts=4, n_shared_experts=1, n_experts_per_tok=2, expert_dim=16, lora_rank=4,
)  # fmt: skip

CONFIGS = {
    "mla": dict(attn_type="mla"),
    "gqa": dict(attn_type="gqa"),
    "gqa-mha-no-shared": dict(attn_type="gqa", n_kv_heads=4, n_shared_experts=0),
    "mla-many-experts": dict(
        attn_type="mla", n_experts=9, n_experts_per_tok=3, n_shared_experts=2, expert_dim=8
    ),
    "mla-deep": dict(attn_type="mla", prelude_layers=2, coda_layers=0, max_loop_iters=5, dense_hidden=40),
    "gqa-top1": dict(attn_type="gqa", n_experts=6, n_experts_per_tok=1, lora_rank=2, n_heads=2, n_kv_heads=1),
}


def component_of(name: str) -> str:
    """Map a real parameter name onto the formula's component keys."""
    if name.startswith("embed."):
        return "embed (tied head)"
    for stage in ("prelude", "coda"):
        if name.startswith(f"{stage}."):
            return stage
    if name.startswith("recurrent.block."):
        rest = name.removeprefix("recurrent.block.")
        if rest.startswith("attn."):
            return "recurrent.block.attn"
        if rest.startswith(("attn_norm.", "ffn_norm.")):
            return "recurrent.block.norms"
        return "recurrent.block." + ".".join(rest.split(".")[:2])  # ffn.router / ffn.experts / ffn.shared
    if name.startswith("recurrent."):
        return "recurrent." + name.split(".")[1]
    if name.startswith("norm."):
        return "norm"
    raise AssertionError(f"parameter {name} has no component in the formula")


@pytest.mark.parametrize("variant", sorted(CONFIGS))
def test_components_match_a_real_model(variant):
    cfg = MythosConfig(**{**BASE, **CONFIGS[variant]})
    model = Mythos(cfg)
    actual: dict[str, int] = {}
    for name, param in model.named_parameters():
        actual[component_of(name)] = actual.get(component_of(name), 0) + param.numel()
    expected = {k: v for k, v in component_params(cfg).items() if v}
    assert actual == expected
    assert count_params(cfg).total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("attn_type", ["mla", "gqa"])
def test_total_matches_the_reference_model(attn_type):
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    fields = {k: v for k, v in BASE.items()}
    reference = OpenMythos(RefConfig(**fields, attn_type=attn_type))
    assert count_params(MythosConfig(**fields, attn_type=attn_type)).total == sum(
        p.numel() for p in reference.parameters()
    )


def test_active_counts_only_the_routed_experts_a_token_uses():
    cfg = MythosConfig(**{**BASE, "n_experts": 8, "n_experts_per_tok": 2})
    counts = count_params(cfg)
    per_expert = 3 * cfg.dim * cfg.expert_dim
    other_loops_scale_rows = (cfg.max_loop_iters - 1) * cfg.lora_rank
    assert counts.total - counts.active == 6 * per_expert + other_loops_scale_rows


def test_touched_grows_with_depth_until_every_expert_is_reachable():
    cfg = MythosConfig(**{**BASE, "n_experts": 8, "n_experts_per_tok": 2, "max_loop_iters": 6})
    per_expert = 3 * cfg.dim * cfg.expert_dim
    one, two, many = (count_params(cfg, n).touched for n in (1, 2, 6))
    assert two - one == 2 * per_expert + cfg.lora_rank  # two more experts, one more LoRA scale row
    assert many == count_params(cfg).total  # 6 loops x top-2 >= 8 experts, all 6 scale rows
    assert count_params(cfg, 1).touched == count_params(cfg, 1).active == count_params(cfg, 1).applied


def test_applied_counts_the_loop_once_per_iteration():
    cfg = MythosConfig(**BASE)
    a1, a2, a3 = (count_params(cfg, n).applied for n in (1, 2, 3))
    one_loop = a2 - a1
    assert a3 - a2 == one_loop > 0
    recurrent = sum(v for k, v in component_params(cfg).items() if k.startswith("recurrent."))
    unused_experts = (cfg.n_experts - cfg.n_experts_per_tok) * 3 * cfg.dim * cfg.expert_dim
    assert one_loop == recurrent - unused_experts - (cfg.max_loop_iters - 1) * cfg.lora_rank


def test_bad_depth_is_rejected():
    with pytest.raises(ValueError, match="n_loops"):
        count_params(MythosConfig(**BASE), n_loops=-1)


@pytest.mark.parametrize("attn_type", ["mla", "gqa"])
def test_kv_formula_matches_our_allocated_cache(attn_type):
    model = Mythos(MythosConfig(**BASE, attn_type=attn_type))
    cache = model.new_cache(batch_size=1, max_len=16, n_loops=3)
    assert cache.nbytes // 16 == kv_cache_bytes_per_token(model.cfg, "float32", 3)


def test_kv_formula_matches_what_the_reference_caches():
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    reference = OpenMythos(RefConfig(**BASE, attn_type="mla")).eval()
    cache: dict = {}
    with torch.no_grad():
        reference(torch.zeros(1, 5, dtype=torch.long), n_loops=3, kv_cache=cache)
    stored = sum(t.numel() * t.element_size() for entry in cache.values() for t in entry.values())
    cfg = MythosConfig(**BASE, attn_type="mla")
    assert stored // 5 == kv_cache_bytes_per_token(cfg, "float32", 3, reference_layout=True)
    ours = kv_cache_elements_per_layer(cfg)
    assert ours == cfg.kv_lora_rank + cfg.qk_rope_head_dim  # one shared rope key per token


def test_giant_presets_are_sized_without_allocating():
    # pure arithmetic: allocating any of these would exhaust this machine's memory
    counts = {
        name: count_params(get_preset(name)) for name in ("1b", "3b", "10b", "50b", "100b", "500b", "1t")
    }
    assert 0.9e12 < counts["1t"].total < 1.1e12
    assert 0.9e9 < counts["1b"].total < 1.2e9
    assert all(c.active < c.total for c in counts.values())


@st.composite
def small_configs(draw) -> MythosConfig:
    attn = draw(st.sampled_from(["mla", "gqa"]))
    n_heads = draw(st.sampled_from([1, 2, 4]))
    n_experts = draw(st.integers(1, 6))
    return MythosConfig(
        vocab_size=draw(st.integers(2, 50)),
        dim=draw(st.sampled_from([16, 32])),  # loop_dim = dim // 8 must be even; heads divide it evenly
        n_heads=n_heads,
        n_kv_heads=draw(st.sampled_from([h for h in (1, 2, 4) if n_heads % h == 0])),
        max_seq_len=16,
        max_loop_iters=draw(st.integers(1, 4)),
        prelude_layers=draw(st.integers(0, 2)),
        coda_layers=draw(st.integers(0, 2)),
        attn_type=attn,
        kv_lora_rank=draw(st.integers(1, 8)),
        q_lora_rank=draw(st.integers(1, 8)),
        qk_rope_head_dim=draw(st.sampled_from([2, 4])),
        qk_nope_head_dim=draw(st.integers(1, 6)),
        v_head_dim=draw(st.integers(1, 6)),
        n_experts=n_experts,
        n_shared_experts=draw(st.integers(0, 2)),
        n_experts_per_tok=draw(st.integers(1, n_experts)),
        expert_dim=draw(st.integers(1, 12)),
        lora_rank=draw(st.integers(1, 4)),
    )


@settings(max_examples=25, deadline=None)
@given(cfg=small_configs(), loops=st.integers(1, 6))
def test_formula_equals_numel_for_any_valid_config(cfg, loops):
    model = Mythos(cfg)
    counts = count_params(cfg, loops)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.active <= counts.touched <= counts.total
    assert counts.applied >= counts.active
