"""The doctor passes a healthy model and catches each invariant broken on purpose, one at a time.

Breaks are made on a real model instance: attributes swapped, hooks added, or a method of the model wing's
code re-compiled with one line changed (a mutation test: the doctor must notice the mutant).
"""

from __future__ import annotations
import __future__

import copy
import inspect
import json
import sys
import textwrap
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mythos.model import Mythos, get_preset, save_checkpoint
from mythos.model import attention as attention_module
from mythos.model.cli import doctor_main
from mythos.model.doctor import (
    Finding,
    check_act_gating,
    check_cache_no_early_exit,
    check_e_frozen,
    check_experts,
    check_hidden_norms,
    check_loop_embedding,
    check_mask_dtype,
    check_moe_placement,
    check_spectral_radius,
    check_tied_head,
    has_violation,
    make_probe,
    run_doctor,
)


@pytest.fixture
def model() -> Mythos:
    torch.manual_seed(0)
    return Mythos(get_preset("tiny")).eval()


@pytest.fixture
def probe(model):
    return make_probe(model.cfg, probe_tokens=96)


def severities(findings: list[Finding], invariant: str) -> set[str]:
    return {f.severity for f in findings if f.invariant == invariant}


def assert_violation(findings: list[Finding], invariant: str, *words: str) -> None:
    bad = [f for f in findings if f.invariant == invariant and f.severity == "violation"]
    assert bad, f"expected a {invariant} violation, got {findings}"
    text = " ".join(f.seen for f in bad)
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    assert all(f.fix for f in bad)


def mutate_method(instance: nn.Module, method: types.FunctionType, old: str, new: str) -> None:
    """Re-compile ``method`` with ``old`` replaced by ``new`` and bind it to ``instance`` only."""
    source = textwrap.dedent(inspect.getsource(method))
    assert old in source, (
        f"the model's code changed: {old!r} is no longer in {method.__qualname__}; update this test"
    )
    module = sys.modules[method.__module__]
    code = compile(
        source.replace(old, new),
        f"<mutant of {method.__qualname__}>",
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    namespace: dict = {}
    exec(code, dict(vars(module)), namespace)
    setattr(instance, method.__name__, types.MethodType(namespace[method.__name__], instance))


def line_indent(method: types.FunctionType, line_start: str) -> str:
    for line in textwrap.dedent(inspect.getsource(method)).splitlines():
        if line.strip().startswith(line_start):
            return line[: len(line) - len(line.lstrip())]
    raise AssertionError(f"the model's code changed: no line starts with {line_start!r}; update this test")


# ---------------------------------------------------------------------------------------------- healthy


def test_a_healthy_model_has_no_violations(model):
    findings = run_doctor(model, probe_tokens=96)
    assert not has_violation(findings), [f for f in findings if f.severity == "violation"]
    checked = {f.invariant for f in findings}
    for invariant in (
        "rho_A", "e_frozen", "moe_only_in_loop", "tied_head", "mask_dtype", "loop_embedding_width",
        "act_still_running", "cache_no_early_exit", "loop_stability", "expert_health",
    ):  # fmt: skip
        assert invariant in checked


def test_the_doctor_leaves_the_model_unchanged(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    run_doctor(model, probe_tokens=32)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.recurrent.act.forward.__func__ is type(model.recurrent.act).forward


def test_a_converted_reference_model_passes():
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    from mythos.model import from_open_mythos

    fields = {k: v for k, v in get_preset("tiny-gqa").to_dict().items() if hasattr(RefConfig, k)}
    torch.manual_seed(1)
    ours = from_open_mythos(OpenMythos(RefConfig(**fields)))
    assert not has_violation(run_doctor(ours, probe_tokens=32))


# ---------------------------------------------------------------------------------------------- 1. rho(A)


def _reference_get_a(self):  # the reference's clamp floor of -20 lets A round to exactly 1.0
    return torch.exp(-torch.exp((self.log_dt + self.log_A).clamp(-20, 20)))


def test_saturating_a_to_one_is_caught(model, probe):
    model.recurrent.injection.get_A = types.MethodType(_reference_get_a, model.recurrent.injection)
    assert_violation(check_spectral_radius(model, probe), "rho_A", "saturated")


def test_a_that_rounds_to_one_in_bf16_is_caught(model, probe):
    injection = model.recurrent.injection
    injection.get_A = types.MethodType(_reference_get_a, injection)
    with torch.no_grad():
        injection.log_A.fill_(-7.0)  # fp32 A = 0.99909: fine in fp32, exactly 1.0 once cast to bf16
    assert _reference_get_a(injection).max() < 1.0
    assert_violation(check_spectral_radius(model, probe), "rho_A", "bfloat16")


def test_a_near_one_is_a_warning(model, probe):
    with torch.no_grad():
        model.recurrent.injection.log_A.fill_(-50.0)  # clamped by our injection at A_MAX < 1
    findings = check_spectral_radius(model, probe)
    assert severities(findings, "rho_A") == {"ok"}
    assert severities(findings, "A_near_1") == {"warning"}


# ---------------------------------------------------------------------------------------------- 2. e frozen


def test_recomputing_e_inside_the_loop_is_caught(model, probe):
    recurrent = model.recurrent
    mutate_method(
        recurrent,
        type(recurrent).step,
        "return self.injection(h, e, out)",
        "return self.injection(h, self.norm(h), out)",
    )
    assert_violation(check_e_frozen(model, probe), "e_frozen", "changed at loop")


def test_injecting_a_drifting_e_is_caught(model, probe):
    calls = [0]

    def drift(module, args):
        calls[0] += 1
        h, e, out = args
        return h, e * (1 + 0.01 * calls[0]), out

    model.recurrent.injection.register_forward_pre_hook(drift)
    assert_violation(check_e_frozen(model, probe), "e_frozen")


# ---------------------------------------------------------------------------------------------- 3. MoE placement


def test_moe_in_the_prelude_is_caught(model, probe):
    model.prelude[0].ffn = copy.deepcopy(model.recurrent.block.ffn)
    assert_violation(check_moe_placement(model, probe), "moe_only_in_loop", "prelude[0]")


def test_a_dense_looped_block_is_caught(model, probe):
    model.recurrent.block.ffn = copy.deepcopy(model.coda[0].ffn)
    assert_violation(check_moe_placement(model, probe), "moe_only_in_loop", "not an MoE")


# ---------------------------------------------------------------------------------------------- 4. tied head


def test_an_untied_head_is_caught(model, probe):
    model.head.weight = nn.Parameter(model.embed.weight.detach().clone())
    assert_violation(check_tied_head(model, probe), "tied_head", "separate parameter", "equal values")


# ---------------------------------------------------------------------------------------------- 5. mask dtype


def _fp32_additive_mask_attend(q, k, v, start, dropout, gqa=False):
    """The reference's mistake: an additive -inf mask built in fp32 whatever the activations are."""
    t, s = q.shape[-2], k.shape[-2]
    mask = torch.full((t, s), float("-inf")).triu(s - t + 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)


def test_an_fp32_mask_under_bf16_is_caught(model, probe, monkeypatch):
    monkeypatch.setattr(attention_module, "_attend", _fp32_additive_mask_attend)
    assert_violation(check_mask_dtype(model, probe), "mask_dtype", "float32")


# ---------------------------------------------------------------------------------------------- 6. loop embedding


def test_a_loop_embedding_of_the_wrong_width_is_caught(model, probe):
    model.recurrent.loop_embedding.loop_dim = model.cfg.dim // 4
    assert_violation(check_loop_embedding(model, probe), "loop_embedding_width", "16 channels")


def test_a_config_with_the_wrong_loop_dim_is_caught(probe):
    cfg = get_preset("tiny").replace(loop_dim=4)
    assert_violation(
        check_loop_embedding(Mythos(cfg).eval(), probe), "loop_embedding_width", "cfg.loop_dim=4"
    )


# ---------------------------------------------------------------------------------------------- 7. ACT gate


def test_removing_the_still_running_gate_is_caught(model, probe):
    recurrent = model.recurrent
    mutate_method(
        recurrent,
        type(recurrent).forward,
        "weight = torch.where(crossing, remainder, p) * running",
        "weight = torch.where(crossing, remainder, p)",
    )
    assert_violation(check_act_gating(model, probe), "act_still_running", "keep contributing")


# ---------------------------------------------------------------------------------------------- 8. cache + exit


def test_breaking_out_of_the_loop_with_a_live_cache_is_caught(model, probe):
    recurrent = model.recurrent
    forward = type(recurrent).forward
    anchor = "halted = halted | (cumulative >= cfg.act_threshold)"
    indent = line_indent(forward, anchor)
    mutate_method(recurrent, forward, anchor, f"{anchor}\n{indent}if bool(halted.all()):\n{indent}    break")
    assert_violation(check_cache_no_early_exit(model, probe), "cache_no_early_exit", "ran 1 of")


# ---------------------------------------------------------------------------------------------- symptoms


def test_exploding_hidden_norms_are_flagged(model, probe):
    model.recurrent.injection.register_forward_hook(lambda module, args, out: out * 8)
    findings = check_hidden_norms(model, probe)
    assert severities(findings, "loop_stability") == {"warning"}


def test_nan_hidden_state_is_a_violation(model, probe):
    model.recurrent.injection.register_forward_hook(lambda module, args, out: out * float("nan"))
    assert_violation(check_hidden_norms(model, probe), "loop_stability", "non-finite")


def test_dead_and_collapsed_experts_are_flagged(model, probe):
    with torch.no_grad():
        model.recurrent.block.ffn.router.bias[:2] = 100.0  # every token picks experts 0 and 1
    findings = check_experts(model, probe)
    seen = " ".join(f.seen for f in findings)
    assert severities(findings, "expert_health") == {"warning"}
    assert "dead experts [2, 3]" in seen and "collapsed routing" in seen


def test_the_suggested_fix_clears_collapsed_routing(model):
    """A fresh router sends almost every token to the same experts; the bias update the finding names fixes it."""
    probe = make_probe(model.cfg, probe_tokens=256)
    assert severities(check_experts(model, probe), "expert_health") == {"warning"}
    for _ in range(20):
        with torch.no_grad():
            out = model(probe.input_ids, n_loops=probe.n_loops, return_aux=True)
        model.update_router_bias(out.aux.expert_load, rate=0.02)
    findings = check_experts(model, probe)
    assert severities(findings, "expert_health") == {"ok"}, findings


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_healthy_preset_exits_zero_with_json(capsys):
    assert doctor_main(["tiny", "--json", "--probe-tokens", "32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert {f["invariant"] for f in report["findings"]} >= {"rho_A", "tied_head", "cache_no_early_exit"}


def test_cli_strict_fails_on_a_sick_checkpoint(tmp_path, model, capsys):
    with torch.no_grad():
        model.recurrent.block.ffn.router.bias[:2] = 100.0
    save_checkpoint(model, tmp_path / "sick")
    assert doctor_main([str(tmp_path / "sick"), "--probe-tokens", "64"]) == 0
    assert "collapsed routing" in capsys.readouterr().out
    assert doctor_main([str(tmp_path / "sick"), "--probe-tokens", "64", "--strict"]) == 1


def test_cli_refuses_to_build_a_giant_preset(capsys):
    assert doctor_main(["1t"]) == 2
    assert "mythos model info 1t" in capsys.readouterr().err


def test_a_deliberate_deviation_can_be_allowed_explicitly(tmp_path, capsys):
    """The training demo turns the loop embedding off on purpose (loop_dim=0); --allow makes that a warning."""
    save_checkpoint(Mythos(get_preset("tiny").replace(loop_dim=0)), tmp_path / "no-loop-emb")
    target = str(tmp_path / "no-loop-emb")
    assert doctor_main([target, "--probe-tokens", "32"]) == 1
    assert "loop embedding is disabled" in capsys.readouterr().out
    assert doctor_main([target, "--probe-tokens", "32", "--allow", "loop_embedding_width"]) == 0
    assert "(allowed)" in capsys.readouterr().out
    assert doctor_main([target, "--allow", "no_such_invariant"]) == 2
    assert "names no invariant" in capsys.readouterr().err
    with pytest.raises(ValueError, match="names no invariant"):
        run_doctor(Mythos(get_preset("tiny")), allow=["typo"])
