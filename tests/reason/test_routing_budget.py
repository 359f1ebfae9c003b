"""Invocation parsing, the routing table, budget allocation and agent lens selection."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mythos.reason.budget import complexity_score, expand_rounds, plan_agent_lenses, plan_budget
from mythos.reason.lenses import DRIVERS, LENSES, SEQUENCES, base_lens
from mythos.reason.routing import EmptyQuestion, parse_invocation, route


@pytest.mark.parametrize(
    "args, forced, question",
    [
        ("trace Should we adopt X?", "trace", "Should we adopt X?"),
        ("TRACE Should…", "trace", "Should…"),
        ("deep trace Q", "trace", "Q"),
        ("quick deep Q", "agent", "Q"),
        ("How deep is it?", None, "How deep is it?"),
        ("trace: Q", None, "trace: Q"),
        ("tracer Q", None, "tracer Q"),
        ("agent   keep   inner   spacing", "agent", "keep   inner   spacing"),
        ("quick Q", "silent", "Q"),
    ],
)
def test_parser_table(args, forced, question):
    inv = parse_invocation(args)
    assert (inv.forced_mode, inv.question) == (forced, question)


@pytest.mark.parametrize("args", ["agent", "", "  deep  quick  "])
def test_keyword_alone_is_an_empty_question(args):
    with pytest.raises(EmptyQuestion, match="no question"):
        parse_invocation(args)


@pytest.mark.parametrize(
    "score, forced, final",
    [
        (1, None, "direct"),
        (1, "trace", "trace"),
        (1, "agent", "agent"),
        (1, "silent", "direct"),
        (2, None, "silent"),
        (3, None, "silent"),
        (3, "trace", "trace"),
        (3, "agent", "agent"),
        (2, "silent", "silent"),
        (4, None, "agent"),
        (5, None, "agent"),
        (4, "trace", "trace"),
        (5, "silent", "silent"),
    ],
)
def test_routing_table(score, forced, final):
    r = route(score, forced)
    assert r.final_mode == final and r.score == score and r.forced == (forced is not None)


def test_explicit_mode_is_taken_literally():
    assert route(1, "silent", explicit=True).final_mode == "silent"
    assert route(1, "silent").final_mode == "direct"


def test_complexity_is_clamped_and_counts_checks():
    assert complexity_score({}) == 1
    assert complexity_score({"multi_hop": True, "high_stakes": True}) == 2
    assert (
        complexity_score(
            dict.fromkeys(
                ["multi_hop", "ambiguous_tradeoffs", "hidden_assumptions", "novel_domain", "high_stakes"],
                True,
            )
        )
        == 5
    )


def test_base_lens_uses_the_registry_not_the_hyphen():
    assert base_lens("Scar-Tissue") == "Scar-Tissue"
    assert base_lens("Steelman-Pro") == "Steelman"
    assert base_lens("Tradeoff-Map-Second") == "Tradeoff-Map"
    with pytest.raises(ValueError, match="no registered lens"):
        base_lens("Banana")


def test_standard_budget_and_boost_insertion():
    plain = plan_budget(SEQUENCES["standard"], [])
    assert [(b.lens, b.count) for b in plain] == [(lens, 1) for lens in SEQUENCES["standard"]]
    boosted = plan_budget(SEQUENCES["standard"], ["Trade-offs"])
    assert [(b.lens, b.count) for b in boosted] == [
        ("Clarify", 1),
        ("Deepen", 1),
        ("Challenge", 1),
        ("Tradeoff-Map", 2),
        ("Expand", 2),
        ("Synthesize", 1),
    ]
    system = plan_budget(SEQUENCES["standard"], ["System dynamics"])
    names = [b.lens for b in system]
    assert names.index("System-Think") == names.index("Deepen") + 1
    assert names.index("Edge-Hunt") == names.index("Challenge") + 1


def test_cap_drops_doubles_of_the_lowest_priority_driver_first():
    budget = plan_budget(SEQUENCES["investment_risk"], ["Trade-offs"])
    assert sum(b.count for b in budget) == 8
    counts = {b.lens: b.count for b in budget}
    assert counts["Tradeoff-Map"] == 1 and counts["Expand"] == 2  # specialized double dropped before core


@given(
    seq=st.sampled_from(sorted(SEQUENCES)),
    drivers=st.lists(st.sampled_from(DRIVERS), max_size=3, unique=True),
    max_rounds=st.integers(3, 10),
)
def test_budget_invariants(seq, drivers, max_rounds):
    budget = plan_budget(SEQUENCES[seq], drivers, max_rounds=max_rounds)
    total = sum(b.count for b in budget)
    assert 3 <= total <= max(max_rounds, 3)
    assert budget[-1].lens == "Synthesize" and budget[-1].count == 1
    assert budget[0].lens == "Clarify"
    assert all(b.lens in LENSES and b.count in (1, 2) for b in budget)
    slots = expand_rounds(budget)
    assert len(slots) == total
    for a, b in zip(slots, slots[1:], strict=False):  # a x2 lens runs its two applications consecutively
        if b.application == 2:
            assert a.lens == b.lens and a.application == 1


@given(drivers=st.lists(st.sampled_from(DRIVERS), max_size=3, unique=True), high_stakes=st.booleans())
def test_agent_lens_invariants(drivers, high_stakes):
    lenses = plan_agent_lenses(drivers, high_stakes)
    ids = [a.lens_id for a in lenses]
    assert 3 <= len(ids) <= 5 and len(set(ids)) == len(ids)
    assert lenses[0].base == "Clarify" and "Synthesize" not in ids
    steelmen = [a for a in lenses if a.base == "Steelman"]
    assert len(steelmen) in (0, 1, 2)
    if len(steelmen) == 2:
        assert {a.lens_id for a in steelmen} == {"Steelman-Pro", "Steelman-Anti"}


def test_agent_lenses_meet_the_calibration_expectations():
    pivot = {a.base for a in plan_agent_lenses(["Trade-offs"], True)}
    ethics = plan_agent_lenses(["Hidden assumptions", "Trade-offs"], True)
    assert "Tradeoff-Map" in pivot and len(pivot) >= 4
    assert {"Steelman-Pro", "Steelman-Anti", "Tradeoff-Map"} <= {a.lens_id for a in ethics} and len(
        ethics
    ) >= 4
    assert len(plan_agent_lenses(["Trade-offs"], False)) >= 3
