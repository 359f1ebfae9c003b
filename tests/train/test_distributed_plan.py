"""`mythos model plan`: the meta-device plan, its CLI, and its activation count checked against measured memory."""

import json
import os
import subprocess
import sys

import pytest

from mythos.model import get_preset
from mythos.model.params import count_params
from mythos.model.plan import PlanError, build_meta_model, make_plan, saved_activation_bytes, unit_params

MEASURE = r"""
import json, resource, sys, torch, torch.nn.functional as F
from mythos.model import Mythos, get_preset
from mythos.model.plan import saved_activation_bytes
torch.manual_seed(0)
B, S, L = (int(a) for a in sys.argv[1:4])
cfg = get_preset("small", act_early_exit=False)
model = Mythos(cfg).to(torch.bfloat16)
ids = torch.randint(0, cfg.vocab_size, (B, S))
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
base = rss()
logits = model(ids, n_loops=L).float()
loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
after_forward = rss()
loss.backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
del logits, loss
model.zero_grad(set_to_none=True)
counted = saved_activation_bytes(model, B, S, L, flash=False, device="cpu")
print(json.dumps({"measured": after_forward - base, "peak": peak - base, "counted": counted}))
"""


def _measure(batch, seq, loops):
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(batch), str(seq), str(loops)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_activation_count_matches_the_memory_a_real_cpu_step_takes():
    """The plan counts the tensors autograd saves; a real bf16 forward's RSS growth must agree (per loop, and
    in total), measured in fresh processes at 2 and 4 loops."""
    two, four = _measure(16, 256, 2), _measure(16, 256, 4)
    per_loop_measured = (four["measured"] - two["measured"]) / 2
    per_loop_counted = (four["counted"] - two["counted"]) / 2
    assert per_loop_counted == pytest.approx(per_loop_measured, rel=0.25)
    for run in (two, four):
        assert 0.6 * run["measured"] <= run["counted"] <= 1.1 * run["measured"]
        assert run["peak"] >= run["measured"]


def test_meta_plan_counts_every_parameter_and_allocates_nothing():
    cfg = get_preset("10b")
    model = build_meta_model(cfg)
    assert all(p.is_meta for p in model.parameters())
    units = unit_params(model)
    assert sum(units.values()) == count_params(cfg).total
    assert units["recurrent.block.ffn.experts"] == unit_params(model, 8)["recurrent.block.ffn.experts"] * 8


def test_activations_grow_by_one_loop_and_truncation_saves_nothing_for_no_grad_loops():
    model = build_meta_model(get_preset("small", act_early_exit=False))
    one, two, three = (saved_activation_bytes(model, 2, 128, n) for n in (1, 2, 3))
    assert two - one == pytest.approx(three - two, rel=0.01)
    assert saved_activation_bytes(model, 2, 128, 3, grad_loops=1) < two
    assert saved_activation_bytes(model, 4, 128, 2) == pytest.approx(2 * two, rel=0.01)


def test_plan_says_what_fits_and_expert_parallel_shrinks_the_gathered_loop():
    plan = make_plan(get_preset("10b"), label="10b", devices=8, device_memory_gb=80, seq_len=4096)
    fits = {s.name: s.fits for s in plan.strategies}
    assert not fits["full backprop"] and fits["checkpoint per loop"]
    ep = make_plan(
        get_preset("10b"), label="10b", devices=8, device_memory_gb=80, seq_len=4096, expert_parallel=8
    )
    assert ep.looped_resident_bytes < plan.looped_resident_bytes / 4
    assert ep.state_bytes == plan.state_bytes
    more = make_plan(get_preset("10b"), label="10b", devices=16, device_memory_gb=80, seq_len=4096)
    assert more.state_bytes == plan.state_bytes // 2
    # 16 devices as 2 dp x 8 ep: each dp row keeps its ep rank's experts' fp32 state whole (not sharded /16)
    grid = make_plan(
        get_preset("10b"), label="10b", devices=16, device_memory_gb=80, seq_len=4096, expert_parallel=8
    )
    experts = unit_params(build_meta_model(get_preset("10b")))["recurrent.block.ffn.experts"]
    assert grid.state_bytes - more.state_bytes == 16 * (experts // 8 - experts // 16)
    assert plan.tokens_per_s_per_device > 0
    with pytest.raises(PlanError, match="--expert-parallel=3"):
        make_plan(get_preset("10b"), label="10b", devices=8, device_memory_gb=80, expert_parallel=3)


def _mythos(*args):
    return subprocess.run(
        [sys.executable, "-m", "mythos", "model", "plan", *args], capture_output=True, text=True, timeout=120
    )


def test_plan_cli_json_and_bad_input():
    done = _mythos("1b", "--devices", "8", "--device-memory", "80", "--seq-len", "1024", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["devices"] == 8 and data["seq_len"] == 1024 and len(data["strategies"]) == 4
    text = _mythos("1b", "--devices", "8", "--device-memory", "80", "--seq-len", "1024")
    assert "peak/device" in text.stdout and "tokens/s per device" in text.stdout
    bad = _mythos("1b", "--devices", "0", "--device-memory", "80")
    assert bad.returncode == 2 and "--devices=0" in bad.stderr and "Traceback" not in bad.stderr
    bad = _mythos("nope", "--devices", "2", "--device-memory", "80")
    assert bad.returncode == 2 and "preset" in bad.stderr
