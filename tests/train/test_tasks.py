"""Synthetic tasks: labels are correct by independent recomputation, depths are what the docs say."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.train.tasks import IGNORE, CarryChain, GraphWalk, VariableBinding, accuracy_by_depth, make_task


def _resolve_binding(task: VariableBinding, row: np.ndarray) -> tuple[list[int], list[int]]:
    """Interpret a program the slow way: returns (value, hops) for each statement."""
    env: dict[int, tuple[int, int]] = {}
    values, hops = [], []
    for i in range(1, len(row), 2):
        var, src = int(row[i]), int(row[i + 1])
        if src < task.name_base:
            env[var] = (src, 0)
        else:
            assert src in env, "a variable is used before it is assigned"
            value, h = env[src]
            env[var] = (value, h + 1)
        values.append(env[var][0])
        hops.append(env[var][1])
    return values, hops


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), max_hops=st.integers(0, 7), long=st.one_of(st.none(), st.integers(0, 11))
)
def test_binding_labels_match_an_interpreter(seed, max_hops, long):
    task = VariableBinding(n_statements=12, n_names=20)
    batch = task.sample(4, np.random.default_rng(seed), max_hops, long_hops=long)
    assert batch.inputs.shape == (4, task.seq_len)
    for b in range(4):
        values, hops = _resolve_binding(task, batch.inputs[b])
        assert list(batch.targets[b, 2::2]) == values
        assert list(batch.depth[b, 2::2]) == hops
        assert (batch.targets[b, 1::2] == IGNORE).all()
        assert max(hops) <= max(max_hops, long if long is not None else 0)
        if long is not None:
            assert long in hops
        names = batch.inputs[b, 1::2]
        assert len(set(names.tolist())) == len(names), "every statement assigns a fresh variable"


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), max_hops=st.integers(1, 6), long=st.one_of(st.none(), st.integers(1, 12))
)
def test_carry_labels_are_the_real_sum(seed, max_hops, long):
    task = CarryChain(n_digits=12)
    batch = task.sample(3, np.random.default_rng(seed), max_hops, long_hops=long)
    for b in range(3):
        a = batch.inputs[b, 1::2] - task.digit_base
        c = batch.inputs[b, 2::2] - task.digit_base
        out = batch.targets[b, 2::2] - task.digit_base
        as_int = lambda digits: int("".join(str(int(d)) for d in digits[::-1]))  # noqa: E731
        assert as_int(out) == (as_int(a) + as_int(c)) % 10**task.n_digits
        depth = batch.depth[b, 2::2]
        if long is None:
            assert depth.max() <= max_hops
        else:
            assert depth.max() >= long


def test_graph_walk_answers_follow_the_edges():
    task = GraphWalk(n_nodes=6, n_queries=3, max_k=8)
    batch = task.sample(5, np.random.default_rng(3), 5, long_hops=8)
    n = task.n_nodes
    for b in range(5):
        row = batch.inputs[b]
        succ = {int(row[1 + 2 * i]): int(row[2 + 2 * i]) for i in range(n)}
        assert len(succ) == n
        for q in range(task.n_queries):
            pos = 1 + 2 * n + 2 * q
            node, k = int(row[pos]), int(row[pos + 1]) - task.hop_base
            for _ in range(k):
                node = succ[node]
            assert batch.targets[b, pos + 1] == node
            assert batch.depth[b, pos + 1] == k
        assert batch.depth[b, 1 + 2 * n + 1] == 8


def test_same_seed_same_batch_and_accuracy_by_depth():
    task = make_task("binding", n_statements=10, n_names=16)
    a = task.sample(8, np.random.default_rng(7), 4)
    b = task.sample(8, np.random.default_rng(7), 4)
    assert (a.inputs == b.inputs).all() and (a.targets == b.targets).all()
    acc = accuracy_by_depth(a.targets.copy(), a, 9)
    assert np.nanmin(acc) == 1.0
    wrong = np.where(a.depth == 0, a.targets + 1, a.targets)
    acc = accuracy_by_depth(wrong, a, 9)
    assert acc[0] == 0.0 and acc[1] == 1.0


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="task must be one of"):
        make_task("nope")
    with pytest.raises(ValueError, match="'n_digit' is not an option of task 'carry'"):
        make_task("carry", n_digit=3)
    with pytest.raises(ValueError, match="max_hops"):
        VariableBinding(n_statements=6).sample(1, np.random.default_rng(0), 9)
    with pytest.raises(ValueError, match="n_names"):
        VariableBinding(n_statements=30, n_names=10)
