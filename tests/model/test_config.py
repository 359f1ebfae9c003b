"""MythosConfig validation: each impossible value raises ConfigError naming the field; presets are exact."""

import dataclasses
import importlib

import pytest

from mythos.model import PRESETS, ConfigError, MythosConfig, get_preset

BAD = [
    ({"dim": 100, "n_heads": 8}, "n_heads"),
    ({"attn_type": "gqa", "n_heads": 8, "n_kv_heads": 3}, "n_kv_heads"),
    ({"n_experts": 4, "n_experts_per_tok": 5}, "n_experts_per_tok"),
    ({"attn_type": "mla", "qk_rope_head_dim": 7}, "qk_rope_head_dim"),
    ({"loop_dim": 7}, "loop_dim"),
    ({"loop_dim": 4096}, "loop_dim"),
    ({"attn_type": "xla"}, "attn_type"),
    ({"act_threshold": 1.5}, "act_threshold"),
    ({"act_threshold": 0.0}, "act_threshold"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"max_loop_iters": 0}, "max_loop_iters"),
    ({"dropout": 1.0}, "dropout"),
    ({"router_bias_rate": -1.0}, "router_bias_rate"),
    ({"dim": 60, "n_heads": 4, "attn_type": "gqa", "n_kv_heads": 2}, "n_heads"),  # head_dim 15 is odd
    ({"reference_compat": True, "loop_dim": 2}, "loop_dim"),
    ({"act": "yes"}, "act"),
    ({"prelude_layers": -1}, "prelude_layers"),
]


@pytest.mark.parametrize(("changes", "field"), BAD)
def test_invalid_values_name_the_field(changes, field):
    base = get_preset("tiny")
    with pytest.raises(ConfigError) as info:
        base.replace(**changes)
    assert info.value.field == field
    assert field in str(info.value) and repr(changes[field]) in str(info.value)


def test_even_head_dim_is_accepted():
    get_preset("tiny").replace(dim=66, n_heads=3, attn_type="gqa", n_kv_heads=1)  # head_dim 22


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_dict_round_trip_and_unknown_key():
    cfg = get_preset("small")
    assert MythosConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="n_layer"):
        MythosConfig.from_dict({**cfg.to_dict(), "n_layer": 3})


def test_loop_dim_default_follows_dim():
    cfg = get_preset("small")
    assert cfg.loop_dim == cfg.dim // 8
    assert cfg.replace(dim=512).loop_dim == 64


def test_reference_variants_match_variants_py():
    variants = importlib.import_module("open_mythos.variants")
    for name in ("1b", "3b", "10b", "50b", "100b", "500b", "1t"):
        ref = dataclasses.asdict(getattr(variants, f"mythos_{name}")())
        ours = get_preset(name).to_dict()
        assert {k: ours[k] for k in ref} == ref, name


def test_small_presets_are_the_issue_config():
    small, gqa = get_preset("small"), get_preset("small-gqa")
    assert (small.vocab_size, small.dim, small.n_heads, small.max_loop_iters) == (4096, 256, 8, 4)
    assert (small.n_experts, small.n_experts_per_tok, small.n_shared_experts, small.expert_dim) == (
        8,
        2,
        1,
        128,
    )
    assert (small.kv_lora_rank, small.q_lora_rank, small.qk_rope_head_dim, small.qk_nope_head_dim) == (
        64,
        128,
        16,
        32,
    )
    assert small.attn_type == "mla" and gqa.attn_type == "gqa" and gqa.n_kv_heads == 2
    assert set(PRESETS) >= {"tiny", "small", "small-gqa", "1b", "1t"}
    with pytest.raises(ConfigError, match="preset"):
        get_preset("huge")


def test_unknown_field_names_it_in_replace_and_presets():
    with pytest.raises(ConfigError) as info:
        get_preset("tiny").replace(n_layerz=3)
    assert info.value.field == "n_layerz" and "not a MythosConfig field" in str(info.value)
    with pytest.raises(ConfigError):
        get_preset("tiny", bogus=1)
