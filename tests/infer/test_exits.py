"""Per-token exits in the decode engine, `mythos generate --exit` and the scheduler; engines see trained weights."""

from __future__ import annotations

import pytest
import torch

from mythos.infer.cli import generate_main
from mythos.infer.engine import Engine
from mythos.infer.sampling import SamplingParams
from mythos.infer.scheduler import Request, Scheduler
from mythos.model import Mythos, get_preset
from mythos.model.exits import ExitCriterion

TOL = 2e-5
LOOPS = 4


def make_model(preset: str = "tiny", seed: int = 0, **overrides) -> Mythos:
    torch.manual_seed(seed)
    cfg = get_preset(preset, vocab_size=300, max_loop_iters=LOOPS, **overrides)
    return Mythos(cfg).eval()


def run(engine: Engine, prompts: list[list[int]], steps: int, exits=None) -> tuple[list[torch.Tensor], list]:
    """Prefill then greedy-decode ``steps`` tokens; every step's logits and loops per row."""
    B = len(prompts)
    logits = engine.prefill(0, prompts, exits=exits)
    out, loops = [logits], [engine.last_loops.tolist()]
    for _ in range(steps):
        logits = engine.decode(0, logits.argmax(-1), exits=exits)
        out.append(logits)
        loops.append(engine.last_loops.tolist())
    assert all(len(row) == B for row in loops)
    return out, loops


STRICT = ["kl:1e-30", "delta:1e-12", "argmax:100"]


@pytest.mark.parametrize("act", [False, True])
@pytest.mark.parametrize("criterion", STRICT)
def test_an_exit_that_never_fires_is_fixed_depth(criterion: str, act: bool) -> None:
    model = make_model(act=act)
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12]]
    fixed, fixed_loops = run(Engine.from_model(model, slots=2, max_len=16), prompts, 4)
    engine = Engine.from_model(model, slots=2, max_len=16, exit=ExitCriterion.parse(criterion))
    got, loops = run(engine, prompts, 4)
    for a, b in zip(got, fixed, strict=True):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)
    if not act:  # with ACT on, the exit path also lets halted tokens leave (as ``adaptive=True``)
        assert loops == fixed_loops == [[LOOPS, LOOPS]] * 5
        assert engine.stats.saved_fraction == 0.0


def test_a_loose_exit_saves_loops_and_stops_at_the_second_loop() -> None:
    model = make_model(act=False)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]]
    engine = Engine.from_model(model, slots=2, max_len=16, exit=ExitCriterion.parse("delta:1e6"))
    got = engine.prefill(0, prompts, all_logits=True)
    # every token compares loop 1 with loop 0 and leaves: exactly a 2-loop forward
    assert engine.last_loops.tolist() == [[2] * 6] * 2
    assert engine.last_stats.per_loop_tokens == [12, 12, 0, 0]
    assert engine.stats.saved_fraction == pytest.approx(0.5)
    two = Engine.from_model(model, slots=2, max_len=16).prefill(0, prompts, n_loops=[2, 2], all_logits=True)
    torch.testing.assert_close(got, two, atol=TOL, rtol=0)
    # later tokens read the exited tokens' entries at every depth (copied from loop 1)
    cache = engine.cache
    torch.testing.assert_close(
        cache.buffers[cache.loop_sites[1]][:, :6], cache.buffers[cache.loop_sites[3]][:, :6]
    )


@pytest.mark.parametrize("preset", ["tiny", "tiny-gqa"])
def test_batched_rows_with_different_exits_match_each_row_alone(preset: str) -> None:
    model = make_model(preset, act=False)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19], [20, 21]]
    exits = [ExitCriterion.parse(c) for c in ("kl:0.05", "delta:0.6", "argmax:1")] + [None]
    batched = Engine.from_model(model, slots=4, max_len=24)
    got, loops = run(batched, prompts, 5, exits=exits)
    for i, (prompt, crit) in enumerate(zip(prompts, exits, strict=True)):
        alone = Engine.from_model(model, slots=1, max_len=24, exit=crit)
        want, want_loops = run(alone, [prompt], 5)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a[i : i + 1], b, atol=1e-4, rtol=0)
        assert [row[i] for row in loops] == [row[0] for row in want_loops]
    flat = [n for row in loops for n in row]
    assert min(flat) < LOOPS  # some token did exit early: the comparison is not vacuous
    assert [row[3] for row in loops] == [LOOPS] * 6  # the row without an exit ran fixed depth


def test_exits_reject_bad_values() -> None:
    engine = Engine.from_model(make_model(), slots=2, max_len=8)
    with pytest.raises(ValueError, match="one per row"):
        engine.prefill(0, [[1], [2]], exits=[None])
    with pytest.raises(ValueError, match="ExitCriterion"):
        engine.prefill(0, [[1], [2]], exits=["kl:0.1", None])
    with pytest.raises(ValueError, match="exit="):
        Engine.from_model(make_model(), exit="kl:0.1")


def test_generate_exit_flag(capsys) -> None:
    argv = [
        "tiny",
        "--prompt",
        "abc",
        "--max-new-tokens",
        "4",
        "--temperature",
        "0",
        "--stats",
        "--n-loops",
        "3",
    ]
    assert generate_main([*argv, "--exit", "delta:1e6"]) == 0
    err = capsys.readouterr().err
    assert "exit delta:1e6" in err or "exit delta:1000000.0" in err
    assert "2.00 loops per generated token (of 3)" in err
    assert "12/18 token-loops run (33.3% saved)" in err  # 3 prompt + 3 decoded tokens, 2 of 3 loops each
    with pytest.raises(SystemExit) as bad:
        generate_main([*argv, "--exit", "entropy:0.1"])
    assert bad.value.code == 2
    assert "unknown criterion" in capsys.readouterr().err


def test_scheduler_requests_carry_their_exit_and_report_loops() -> None:
    model = make_model(act=False)
    engine = Engine.from_model(model, slots=3, max_len=24)
    scheduler = Scheduler(engine).start()
    try:
        greedy = SamplingParams(temperature=0.0)
        reqs = [
            scheduler.submit(Request([5, 6, 7], 4, greedy, exit=ExitCriterion.parse("delta:1e6"))),
            scheduler.submit(Request([8, 9], 4, greedy)),
        ]
        for r in reqs:
            while (event := r.events.get(timeout=60))[0] != "done":
                assert event[0] == "token", event
    finally:
        scheduler.stop()
    assert reqs[0].loops_run == [2, 2, 2, 2]
    assert reqs[1].loops_run == [LOOPS] * 4
    with pytest.raises(ValueError, match="exit="):
        scheduler.submit(Request([1], 1, exit="kl:0.1"))


@pytest.mark.parametrize("preset", ["tiny", "tiny-gqa"])
def test_an_engine_from_a_model_sees_its_trained_weights(preset: str) -> None:
    torch.manual_seed(0)
    model = Mythos(get_preset(preset, vocab_size=300))
    engine = Engine.from_model(model, slots=1, max_len=16)
    ids = torch.randint(0, 300, (1, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(ids).float().logsumexp(-1).mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.recurrent.block.ffn.update_router_bias(torch.arange(model.cfg.n_experts).float())
    model.eval()
    with torch.no_grad():
        want = model(ids)
    engine.reset()
    got = engine.prefill(0, ids.tolist(), all_logits=True)
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    bf16 = Engine.from_model(model, slots=1, max_len=16, weight_dtype=torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01)
        want = model(ids)
    torch.testing.assert_close(bf16.prefill(0, ids.tolist(), all_logits=True), want, atol=0.05, rtol=0.05)
