"""The decode engine against the model's own forward (and the reference), fp32, tight tolerance."""

from __future__ import annotations

import pytest
import torch

from mythos.infer.cache import parse_policy
from mythos.infer.engine import Engine
from mythos.model import Mythos, get_preset

TOL = 2e-5


def make_model(preset: str, seed: int = 0, **overrides) -> Mythos:
    torch.manual_seed(seed)
    return Mythos(get_preset(preset, vocab_size=300, **overrides)).eval()


@pytest.fixture(params=["tiny", "tiny-gqa"])
def attn_preset(request) -> str:
    return request.param


@pytest.mark.parametrize("compat", [False, True])
def test_prefill_then_decode_matches_full_forward(attn_preset: str, compat: bool) -> None:
    model = make_model(attn_preset, reference_compat=compat)
    ids = torch.randint(0, 300, (2, 24))
    with torch.no_grad():
        full = model(ids)
    engine = Engine.from_model(model, slots=2, max_len=40)
    assert torch.allclose(engine.prefill(0, ids.tolist(), all_logits=True), full, atol=TOL)
    engine.reset()
    logits = engine.prefill(0, ids[:, :10].tolist())
    assert torch.allclose(logits, full[:, 9], atol=TOL)
    for j in range(10, 24):
        logits = engine.decode(0, ids[:, j])
        assert torch.allclose(logits, full[:, j], atol=TOL), f"position {j}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_models_decode_like_their_forward(dtype: torch.dtype) -> None:
    model = make_model("tiny").to(dtype)
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        full = model(ids).float()
    engine = Engine.from_model(model, slots=2, max_len=16)
    logits = engine.prefill(0, ids[:, :6].tolist())
    worst = (logits - full[:, 5]).abs().max()
    for j in range(6, 12):
        worst = max(worst, (engine.decode(0, ids[:, j]) - full[:, j]).abs().max())
    assert worst <= 4e-3  # a couple of bf16 ulps at this logit scale (~0.6)


def test_without_act_the_last_loop_is_the_output() -> None:
    model = make_model("tiny", act=False)
    ids = torch.randint(0, 300, (2, 10))
    engine = Engine.from_model(model, slots=2, max_len=16)
    with torch.no_grad():
        assert torch.allclose(engine.prefill(0, ids.tolist(), all_logits=True), model(ids), atol=TOL)
        engine.reset()
        mixed = engine.prefill(0, ids.tolist(), n_loops=[2, 3], all_logits=True)
        assert torch.allclose(mixed[0], model(ids[:1], n_loops=2)[0], atol=TOL)
        adaptive = Engine.from_model(model, slots=2, max_len=16, adaptive=True)
        got = adaptive.prefill(0, ids.tolist(), n_loops=[2, 3], all_logits=True)
        assert torch.allclose(got, mixed, atol=TOL)
        assert adaptive.last_stats.per_loop_tokens == [20, 20, 10]  # row 0 stops after its 2 loops


def test_ragged_batch_matches_each_prompt_alone(attn_preset: str) -> None:
    model = make_model(attn_preset)
    prompts = [[5, 6, 7], list(range(20, 37)), [9] * 8]
    engine = Engine.from_model(model, slots=3, max_len=48)
    last = engine.prefill(0, prompts)
    nxt = torch.tensor([11, 12, 13])
    after = engine.decode(0, nxt)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            alone = model(torch.tensor([p + [int(nxt[i])]]))
        assert torch.allclose(last[i], alone[0, -2], atol=TOL)
        assert torch.allclose(after[i], alone[0, -1], atol=TOL)


def test_chunked_prefill_matches_one_shot() -> None:
    model = make_model("tiny")
    ids = torch.randint(0, 300, (1, 30))
    with torch.no_grad():
        full = model(ids)
    engine = Engine.from_model(model, max_len=32, prefill_chunk=7)
    assert torch.allclose(engine.prefill(0, ids.tolist(), all_logits=True), full, atol=TOL)


def test_per_row_loop_counts_match_model_at_that_depth() -> None:
    model = make_model("tiny")  # max_loop_iters=3
    ids = torch.randint(0, 300, (2, 9))
    engine = Engine.from_model(model, slots=2, max_len=16)
    logits = engine.prefill(0, ids.tolist(), n_loops=[1, 3], all_logits=True)
    with torch.no_grad():
        assert torch.allclose(logits[0], model(ids[:1], n_loops=1)[0], atol=TOL)
        assert torch.allclose(logits[1], model(ids[1:], n_loops=3)[0], atol=TOL)


@pytest.mark.slow  # importing open_mythos pulls in transformers (~10 s here)
def test_matches_reference_through_converter() -> None:
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    from mythos.model.reference import from_open_mythos

    torch.manual_seed(1)
    cfg = RefConfig(
        vocab_size=300,
        dim=64,
        n_heads=4,
        n_kv_heads=2,
        max_seq_len=64,
        max_loop_iters=3,
        prelude_layers=1,
        coda_layers=1,
        attn_type="mla",
        kv_lora_rank=16,
        q_lora_rank=32,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=8,
        n_experts=4,
        n_shared_experts=1,
        n_experts_per_tok=2,
        expert_dim=16,
        lora_rank=4,
    )
    ref = OpenMythos(cfg).eval()
    ids = torch.randint(0, 300, (1, 12))
    engine = Engine.from_model(from_open_mythos(ref).eval(), max_len=16)
    with torch.no_grad():
        want = ref(ids, n_loops=3)
    assert torch.allclose(engine.prefill(0, ids.tolist(), all_logits=True), want, atol=1e-5)


def test_adaptive_without_halting_equals_fixed_depth() -> None:
    model = make_model("tiny")
    with torch.no_grad():  # halting probability ~0: nobody halts before the last loop
        model.recurrent.act.halt.bias.fill_(-10.0)
    ids = torch.randint(0, 300, (2, 12))
    fixed = Engine.from_model(model, slots=2, max_len=16).prefill(0, ids.tolist(), all_logits=True)
    adaptive = Engine.from_model(model, slots=2, max_len=16, adaptive=True)
    got = adaptive.prefill(0, ids.tolist(), all_logits=True)
    assert torch.allclose(got, fixed, atol=TOL)
    assert adaptive.last_stats.saved_fraction == 0.0


def test_adaptive_skips_halted_tokens_and_keeps_their_outputs() -> None:
    model = make_model("tiny", reference_compat=True)
    with torch.no_grad():  # make the halting head say "done" right away for every token
        model.recurrent.act.halt.bias.fill_(10.0)
    ids = torch.randint(0, 300, (2, 12))
    fixed = Engine.from_model(model, slots=2, max_len=16).prefill(0, ids.tolist(), all_logits=True)
    adaptive = Engine.from_model(model, slots=2, max_len=16, adaptive=True)
    got = adaptive.prefill(0, ids.tolist(), all_logits=True)
    assert adaptive.last_stats.per_loop_tokens == [24, 0, 0]
    assert adaptive.last_stats.saved_fraction == pytest.approx(2 / 3)
    # every token halted at loop 0, so its output is final there: skipping loops 1-2 changes nothing
    assert torch.allclose(got, fixed, atol=TOL)
    # later tokens find keys at every depth: the halted token's loop-0 entry copied into deeper loops
    cache = adaptive.cache
    loop0, loop2 = cache.buffers[cache.loop_sites[0]], cache.buffers[cache.loop_sites[2]]
    assert torch.equal(loop0[:, :12], loop2[:, :12])


def test_shared_cache_prefill_is_exact_and_smaller() -> None:
    model = make_model("tiny")
    ids = torch.randint(0, 300, (1, 16))
    with torch.no_grad():
        full = model(ids)
    per_loop = Engine.from_model(model, max_len=20)
    shared = Engine.from_model(model, max_len=20, cache_policy="shared")
    assert torch.allclose(shared.prefill(0, ids.tolist(), all_logits=True), full, atol=TOL)
    n_sites = 1 + 3 + 1  # prelude, three loops, coda
    assert shared.cache.bytes_per_token() * n_sites == per_loop.cache.bytes_per_token() * 3


def test_policy_mapping() -> None:
    assert parse_policy("per-loop", 4) == [0, 1, 2, 3]
    assert parse_policy("shared", 4) == [0, 0, 0, 0]
    assert parse_policy("last-1", 4) == [0, 0, 0, 1]
    assert parse_policy("last-2", 4) == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="cache_policy='every'"):
        parse_policy("every", 4)


def test_overflowing_the_cache_is_a_clear_error() -> None:
    engine = Engine.from_model(make_model("tiny"), max_len=8)
    engine.prefill(0, [[1, 2, 3, 4, 5, 6, 7, 8]])
    with pytest.raises(ValueError, match="exceeds max_len=8"):
        engine.decode(0, torch.tensor([1]))
    with pytest.raises(ValueError, match="n_loops=9"):
        Engine.from_model(make_model("tiny"), max_len=8).prefill(0, [[1]], n_loops=[9])


@pytest.mark.slow
def test_compiled_decode_matches_eager(attn_preset: str) -> None:
    """The fixed-depth decode step captures with torch.compile (CPU inductor) and gives the same logits, MLA
    and GQA, through the first (dynamo) call and the replays after it."""
    model = make_model(attn_preset)
    ids = torch.randint(0, 300, (2, 14))
    eager = Engine.from_model(model, slots=2, max_len=16)
    compiled = Engine.from_model(model, slots=2, max_len=16)
    compiled.compile(fullgraph=True)
    a, b = eager.prefill(0, ids[:, :8].tolist()), compiled.prefill(0, ids[:, :8].tolist())
    for j in range(8, 14):
        a, b = eager.decode(0, ids[:, j]), compiled.decode(0, ids[:, j])
        assert torch.allclose(a, b, atol=1e-4), f"position {j}"


def test_compiled_variants_are_replayed_and_match_eager() -> None:
    """After its first step, each compiled variant (width, depth, uniform) is called directly with the same
    input tensors; logits and cache positions stay those of the eager engine as variants alternate."""
    model = make_model("tiny")
    ids = torch.randint(0, 300, (2, 14), generator=torch.Generator().manual_seed(5))
    eager = Engine.from_model(model, slots=2, max_len=16)
    compiled = Engine.from_model(model, slots=2, max_len=16)
    compiled.compile()
    eager.prefill(0, ids[:, :6].tolist())
    compiled.prefill(0, ids[:, :6].tolist())
    for j, loops in zip(
        range(6, 14), ([3, 3], [1, 3], [3, 3], [1, 3], [2, 3], [3, 3], [1, 3], [3, 3]), strict=True
    ):
        a = eager.decode(0, ids[:, j], n_loops=loops)
        b = compiled.decode(0, ids[:, j], n_loops=loops)
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=f"position {j}, loops {loops}")
    assert set(compiled.replay.graphs) == {(0, 2, 3, True), (0, 2, 3, False)}
    assert compiled.cache.host_positions[:2] == eager.cache.host_positions[:2] == [14, 14]
    assert torch.equal(compiled.cache.positions, eager.cache.positions)


@pytest.mark.parametrize("tokens", [1, 3, 16])
def test_every_decode_moe_path_equals_the_models_moe(tokens: int) -> None:
    """Dense (every expert, zero gates), gathered (selected experts indexed in the reduction) and grouped
    (sorted dispatch) give the model's MoE output; which one a step uses depends on width and compile."""
    from mythos.infer.kernels import grouped_mm_available, moe_dense, moe_gathered, moe_grouped
    from mythos.infer.view import view_from_model

    moe = view_from_model(make_model("tiny")).recurrent.moe
    x = torch.randn(tokens, moe.router.shape[1], generator=torch.Generator().manual_seed(tokens))
    with torch.no_grad():
        expected = moe.module(x.unsqueeze(0)).squeeze(0)
        paths = [moe_dense, moe_gathered] + ([moe_grouped] if grouped_mm_available(x.device, x.dtype) else [])
        for path in paths:
            torch.testing.assert_close(path(x, moe), expected, atol=1e-5, rtol=1e-5, msg=path.__name__)


def test_decode_width_pads_compiled_batches_to_powers_of_two() -> None:
    engine = Engine.from_model(make_model("tiny"), slots=6, max_len=8)
    assert [engine.decode_width(n) for n in (1, 3, 6)] == [1, 3, 6]
    engine.compiled = True  # what compile() sets; the widths only
    assert [engine.decode_width(n) for n in (1, 2, 3, 5, 6)] == [1, 2, 4, 6, 6]
    with pytest.raises(ValueError, match="at least one token"):
        engine.prefill(0, [[]])


def assert_close_not_equal(exact: Engine, low: Engine, ids: torch.Tensor) -> None:
    """Prefill 6 tokens, decode 6 more: a low-precision engine's fp32 logits stay near the exact ones but
    differ (the low precision is really in use)."""
    exact.prefill(0, ids[:, :6].tolist()), low.prefill(0, ids[:, :6].tolist())
    for j in range(6, 12):
        a, b = exact.decode(0, ids[:, j]), low.decode(0, ids[:, j])
        assert b.dtype == torch.float32
        assert 0 < (a - b).abs().max() < 0.05, f"position {j}"


def test_bf16_weight_storage_keeps_activations_and_cache_fp32(attn_preset: str) -> None:
    """weight_dtype=bf16: matrices are stored in bf16, everything else (and every sum) stays fp32; the logits
    are those of the model with bf16-rounded matrices, close to fp32 but not equal."""
    model = make_model(attn_preset)
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    exact = Engine.from_model(model, slots=2, max_len=16)
    low = Engine.from_model(model, slots=2, max_len=16, weight_dtype=torch.bfloat16)
    v = low.view
    assert v.embed.dtype == v.head.dtype == v.recurrent.moe.rows_gate_up.dtype == torch.bfloat16
    assert v.recurrent.attn_norm.weight.dtype == v.recurrent.moe.router.dtype == torch.float32
    assert all(b.dtype == torch.float32 for b in low.cache.buffers)
    assert_close_not_equal(exact, low, ids)


@pytest.mark.slow
@pytest.mark.parametrize("weight_dtype", [None, torch.bfloat16])
def test_compiled_batch1_decode_at_the_small_config_matches_eager(weight_dtype) -> None:
    """The benchmark's shape: one row (fused multiply-and-sum projections, gathered experts, the native
    attention kernel on eight heads) compiled, against the eager engine with the same weights."""
    torch.manual_seed(0)
    model = Mythos(get_preset("small", vocab_size=300, max_seq_len=64)).eval()
    ids = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(2))
    eager = Engine.from_model(model, max_len=24, weight_dtype=weight_dtype)
    compiled = Engine.from_model(model, max_len=24, weight_dtype=weight_dtype)
    compiled.compile()
    a, b = eager.prefill(0, ids[:, :12].tolist()), compiled.prefill(0, ids[:, :12].tolist())
    for j in range(12, 20):
        a, b = eager.decode(0, ids[:, j]), compiled.decode(0, ids[:, j])
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=f"position {j}")


def test_bf16_cache_halves_cache_bytes_and_stays_close(attn_preset: str) -> None:
    model = make_model(attn_preset)
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(3))
    exact = Engine.from_model(model, slots=2, max_len=16)
    low = Engine.from_model(model, slots=2, max_len=16, cache_dtype=torch.bfloat16)
    assert all(b.dtype == torch.bfloat16 for b in low.cache.buffers)
    assert 2 * low.cache.bytes_per_token() == exact.cache.bytes_per_token()
    assert_close_not_equal(exact, low, ids)


@pytest.mark.slow
def test_warm_up_compiles_every_decode_width_and_leaves_slots_empty() -> None:
    engine = Engine.from_model(make_model("tiny"), slots=3, max_len=8)
    assert engine.warm_up() == [1, 2, 3]  # eager: nothing to compile, widths only
    engine.compile()
    assert engine.warm_up() == [1, 2, 3]
    assert engine.cache.host_positions == [0, 0, 0] and engine.cache.positions.tolist() == [0, 0, 0]
    logits = engine.prefill(0, [[1, 2]])
    assert logits.shape == (1, 300)


@pytest.mark.slow
def test_compiled_decode_past_the_recompile_limit_falls_back_to_eager() -> None:
    """More batch shapes and loop counts than graphs allowed: steps beyond the limit run eagerly, correctly."""
    model = make_model("tiny")
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(4))
    eager = Engine.from_model(model, slots=2, max_len=12)
    compiled = Engine.from_model(model, slots=2, max_len=12)
    compiled.compile(recompile_limit=1)
    eager.prefill(0, ids[:, :4].tolist())
    compiled.prefill(0, ids[:, :4].tolist())
    with pytest.warns(RuntimeWarning, match="recompile limit"):
        for j, loops in zip(range(4, 10), ([3, 3], [2, 2], [1, 3], [3, 3], [2, 1], [1, 1]), strict=True):
            a = eager.decode(0, ids[:, j], n_loops=loops)
            b = compiled.decode(0, ids[:, j], n_loops=loops)
            assert torch.allclose(a, b, atol=1e-4), f"position {j}, loops {loops}"
