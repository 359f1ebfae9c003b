"""The engine on the scripted backend: every mode, every halting rule, the fallback table, budgets, deadlines."""

import re
from pathlib import Path

import pytest

from mythos.reason.scripted import Fault

from .helpers import Q_ETHICS, Q_GENERIC, Q_PIVOT, Q_SQLITE, run

ROUND_HEADER = re.compile(r"^#{2,3} (Round|Subagent|Prelude)\b", re.MULTILINE)


def test_direct_mode_for_a_lookup():
    rec, _ = run("What is 2+2?")
    assert rec.route["final_mode"] == "direct" and rec.route["score"] == 1
    assert rec.rendered.startswith("## Answer\n")
    assert rec.rendered.rstrip().endswith("*Depth: 0 rounds. Mode: direct.*")
    assert [c.phase for c in rec.calls] == ["prelude", "direct"]


def test_silent_mode_shows_only_the_answer_and_a_lens_path():
    rec, _ = run(Q_GENERIC)
    assert rec.route == {
        "score": 3,
        "default_mode": "silent",
        "forced_mode": None,
        "final_mode": "silent",
        "forced": False,
    }
    assert not ROUND_HEADER.search(rec.rendered) and "**Convergence:**" not in rec.rendered
    assert (
        "*Depth: 4 latent passes. Mode: silent. Lens path: Clarify → Deepen → Challenge → Tradeoff-Map.*"
        in rec.rendered
    )
    assert rec.halting["reason"] == "self_consistent" and rec.halting["at_round"] == 4


def test_trace_mode_renders_rounds_with_the_insight_chain_from_round_two():
    rec, _ = run(f"trace {Q_GENERIC}")
    text = rec.rendered
    assert text.startswith("## Prelude\n**Q:**") and "| **Not:**" in text
    assert "**Complexity:** 3/5 → trace mode (forced), 8 total | **Drivers:** Trade-offs" in text
    assert len(re.findall(r"^### Round \d+", text, re.MULTILINE)) == len(rec.rounds) == 4
    round1 = text.split("### Round 1")[1].split("### Round 2")[0]
    assert "**Insight chain:**" not in round1
    assert "**Insight chain:** R1: " in text.split("### Round 2")[1]
    assert "*Depth: 4 rounds, converged at round 4. Mode: trace.*" in text


def test_second_application_heading_names_the_driver():
    rec, _ = run(f"trace {Q_PIVOT}")
    assert "### Round 3: Expand (2nd round, Trade-offs ×2)" in rec.rendered
    assert [r.lens for r in rec.rounds] == ["Clarify", "Expand", "Expand", "Scar-Tissue", "Tradeoff-Map"]


def test_keyword_changes_routing_not_diagnosis():
    plain, _ = run(Q_PIVOT)
    forced, _ = run(f"quick {Q_PIVOT}")
    assert plain.route["final_mode"] == "agent" and forced.route["final_mode"] == "silent"
    assert plain.prelude["complexity"] == forced.prelude["complexity"] == 4
    assert plain.prelude["primary_drivers"] == forced.prelude["primary_drivers"]


def test_api_mode_beats_the_keyword():
    rec, _ = run(f"trace {Q_GENERIC}", mode="agent")
    assert rec.route["final_mode"] == "agent" and rec.route["forced_by"] == "api"


def test_forced_trace_on_a_lookup_uses_the_minimum_budget():
    rec, _ = run("trace What is 2+2?")
    assert [b["lens"] for b in rec.budget] == ["Clarify", "Challenge", "Synthesize"]
    deep, _ = run("deep What is 2+2?")
    assert len(deep.subagents) == 3


def test_negative_delta_is_discarded_never_shown_and_halts():
    bad = "THE MOON IS MADE OF CHEESE"
    rec, _ = run(
        f"trace {Q_GENERIC}", patches={"round:3:*": {"new_insight": bad, "status": "negative-delta"}}
    )
    assert rec.halting["reason"] == "negative_delta" and rec.halting["at_round"] == 3
    assert rec.rounds[2].discarded and rec.rounds[2].insight is None
    assert bad not in rec.rendered and bad not in rec.to_json().split('"coda"')[1]
    assert "**New insight (DISCARDED — negative delta):**" in rec.rendered
    assert "*Depth: 3 rounds (1 discarded as negative-delta), converged early. Mode: trace.*" in rec.rendered


def test_contradiction_without_support_is_negative_delta():
    rec, _ = run(
        f"trace {Q_GENERIC}",
        patches={"round:2:*": {"contradicts": [1], "better_supported_than_contradicted": False}},
    )
    assert rec.halting["reason"] == "negative_delta" and rec.rounds[1].discarded


def test_discarded_insight_never_reaches_later_prompts_when_halting_is_off():
    bad = "A CONFUSED DISTINCTION WITHOUT DIFFERENCE"
    rec, backend = run(
        f"trace {Q_GENERIC}",
        halting=False,
        patches={"round:2:*": {"new_insight": bad, "introduces_confusion": True}},
    )
    assert rec.halting["reason"] == "max_rounds" and len(rec.rounds) == 8
    later = [r for r in backend.requests if r.tag.startswith(("round:3", "round:4", "coda"))]
    assert later and all(bad not in m["content"] for r in later for m in r.messages)


def test_no_delta_when_the_model_has_nothing_new():
    rec, _ = run(f"trace {Q_GENERIC}", patches={"round:2:*": {"new_insight": None}})
    assert rec.halting == {
        "reason": "no_delta",
        "at_round": 2,
        "skipped_lenses": rec.halting["skipped_lenses"],
        "budget_rounds": 8,
    }


def test_no_delta_when_the_insight_repeats_the_chain():
    rec, backend = run(f"trace {Q_GENERIC}")
    first = rec.rounds[0].insight
    rec, _ = run(f"trace {Q_GENERIC}", patches={"round:2:*": {"new_insight": first}})
    assert rec.halting["reason"] == "no_delta" and rec.rounds[1].note == "repeats an earlier insight"


def test_trivial_delta_halts():
    rec, _ = run(f"trace {Q_GENERIC}", patches={"round:2:*": {"non_trivial": False}})
    assert rec.halting["reason"] == "trivial_delta" and rec.rounds[1].insight


def test_max_rounds_when_nothing_converges():
    rec, _ = run(f"trace {Q_GENERIC}", patches={"round:*": {"status": "evolving"}})
    assert rec.halting["reason"] == "max_rounds" and len(rec.rounds) == 8
    assert "stopped at the round budget" in rec.rendered


def test_halting_off_runs_every_budgeted_round():
    on, _ = run(f"trace {Q_GENERIC}")
    off, _ = run(f"trace {Q_GENERIC}", halting=False)
    assert len(on.rounds) == 4 and len(off.rounds) == 8
    assert off.totals["tokens"] > on.totals["tokens"]


def test_reprelude_fires_once_and_rebudgets_the_remaining_lenses():
    rec, backend = run(
        f"trace {Q_GENERIC}",
        patches={"round:*": {"status": "evolving"}, "round:2:*": {"missed_driver": "System dynamics"}},
    )
    assert rec.reprelude["after_round"] == 2 and rec.reprelude["missed_driver"] == "System dynamics"
    assert "## Prelude (re-Prelude after Round 2)" in rec.rendered
    assert sum(1 for c in rec.calls if c.phase == "reprelude") == 1
    lenses = [r.lens for r in rec.rounds]
    assert lenses[:2] == ["Clarify", "Deepen"] and "Edge-Hunt" in lenses  # System dynamics boosts Edge-Hunt
    assert len(rec.rounds) <= 8


def test_second_missed_driver_halts_for_scope_drift():
    rec, _ = run(
        f"trace {Q_GENERIC}",
        patches={
            "round:*": {"status": "evolving"},
            "round:2:*": {"missed_driver": "System dynamics"},
            "round:3:*": {"missed_driver": "Novel domain"},
        },
    )
    assert rec.halting["reason"] == "scope_drift" and rec.halting["at_round"] == 3


def test_alternate_sequence_needs_a_reason():
    rec, _ = run(
        f"trace {Q_GENERIC}", patches={"prelude": {"problem_type": "debugging", "sequence_reason": ""}}
    )
    assert rec.prelude["problem_type"] == "standard" and any("no reason" in n for n in rec.notes)
    rec, _ = run(
        f"trace {Q_GENERIC}",
        patches={"prelude": {"problem_type": "debugging", "sequence_reason": "a failing system"}},
    )
    assert (
        rec.prelude["problem_type"] == "debugging"
        and "(sequence: debugging — a failing system)" in rec.rendered
    )


def test_agent_mode_runs_subagents_concurrently_and_merges():
    rec, backend = run(f"deep {Q_ETHICS}", latency=0.05)
    subs = [c for c in rec.calls if c.phase == "subagent"]
    assert len(subs) == 5 and {s.lens_id for s in rec.subagents} >= {
        "Steelman-Pro",
        "Steelman-Anti",
        "Tradeoff-Map",
    }
    assert max(c.t_start for c in subs) < min(c.t_end for c in subs)  # all in flight at once
    assert rec.fallback_row == "none" and rec.merge["tensions"]
    assert (
        "[Dispatching 5 parallel subagents: Clarify, Challenge, Steelman-Pro, Steelman-Anti, Tradeoff-Map]"
        in rec.rendered
    )
    assert "### Merge\n**Convergent points:**" in rec.rendered and "**Tensions:** A/B" in rec.rendered
    assert "*Depth: 5 parallel subagents merged. Mode: agent.*" in rec.rendered
    # independence: no subagent prompt contains another subagent's lens instruction or finding
    for request in backend.requests:
        if request.tag.startswith("sub:"):
            own = request.tag.split(":")[2]
            prompt = request.messages[-1]["content"]
            assert "FINDINGS" not in prompt and "INSIGHT" not in prompt
            assert re.findall(r"^LENS: (\S+)", prompt, re.MULTILINE) == [
                own.split("-Pro")[0].split("-Anti")[0]
            ]
            assert not any(s.finding in prompt for s in rec.subagents)


def test_concurrency_one_runs_subagents_one_after_another():
    rec, _ = run(f"deep {Q_ETHICS}", latency=0.02, max_concurrency=1)
    subs = sorted((c for c in rec.calls if c.phase == "subagent"), key=lambda c: c.t_start)
    assert all(a.t_end <= b.t_start for a, b in zip(subs, subs[1:], strict=False))


def test_one_failed_of_five_merges_the_rest_with_a_note():
    rec, _ = run(f"deep {Q_ETHICS}", faults={"sub:B:*": Fault("http_5xx")}, max_retries=0)
    assert rec.fallback_row == "one_failed"
    assert "[Subagent B — failed: http_5xx" in rec.rendered
    assert not any(c.phase == "recovery" for c in rec.calls)
    assert "*Depth: 5 parallel subagents merged. Mode: agent.*" in rec.rendered


def test_one_failed_of_three_is_recovered_like_two_or_more():
    rec, _ = run(f"deep {Q_SQLITE}", mode="agent", max_subagents=3, faults={"sub:C:*": Fault("empty")})
    assert len(rec.subagents) == 3 and rec.fallback_row == "recovered"
    assert [c.phase for c in rec.calls].count("recovery") == 1 and rec.subagents[2].status == "recovered"
    assert (
        "*Depth: 3 parallel subagents merged. Mode: agent (1 subagents failed; recovered via silent single-pass).*"
        in rec.rendered
    )


def test_two_failed_are_recovered_sequentially():
    rec, _ = run(
        f"deep {Q_ETHICS}",
        faults={"sub:A:*": Fault("garbage"), "sub:D:*": Fault("hang")},
        call_deadline_s=0.5,
        attempt_timeout_s=0.3,
        max_retries=0,
    )
    rec_calls = [c for c in rec.calls if c.phase == "recovery"]
    assert rec.fallback_row == "recovered" and len(rec_calls) == 2
    assert rec_calls[0].t_end <= rec_calls[1].t_start
    assert "(2 subagents failed; recovered via silent single-pass)" in rec.rendered


def test_failed_recovery_counts_as_failed_in_the_sixty_percent_rule():
    faults = {"sub:*": Fault("http_4xx"), "recovery:*": Fault("http_4xx")}
    faults = {
        "sub:A:*": Fault("http_4xx"),
        "sub:B:*": Fault("http_4xx"),
        "sub:C:*": Fault("http_4xx"),
        "recovery:*": Fault("http_4xx"),
    }
    rec, _ = run(f"deep {Q_ETHICS}", faults=faults)
    assert [s.status for s in rec.subagents].count("recovery_failed") == 3
    assert rec.merge["silent"] and any("60 %" in n for n in rec.notes)
    assert "### Merge" not in rec.rendered and rec.coda.get("final_answer")


def test_all_failed_falls_back_to_silent_standard_rotation():
    rec, _ = run(f"deep {Q_ETHICS}", faults={"sub:*": Fault("http_4xx")})
    assert rec.fallback_row == "all_failed"
    assert [b["lens"] for b in rec.budget] == ["Clarify", "Deepen", "Challenge", "Expand", "Synthesize"]
    assert "Mode: agent → silent (all subagents failed)." in rec.rendered
    assert not ROUND_HEADER.search(rec.rendered)


def test_rephrased_question_counts_as_a_failed_subagent():
    rec, _ = run(f"deep {Q_ETHICS}", patches={"sub:C:*": {"independent_finding": Q_ETHICS}})
    assert rec.fallback_row == "one_failed" and rec.subagents[2].status == "failed"
    assert "rephrased the question" in rec.subagents[2].error


def test_prelude_failure_uses_the_default_diagnosis():
    rec, _ = run(Q_GENERIC, faults={"prelude": Fault("text", "I refuse to use JSON.")})
    assert rec.prelude["primary_drivers"] == ["Multi-hop"] and rec.calls[0].repairs == 1
    assert any("default diagnosis" in f for f in rec.fallbacks) and "*Fallbacks:" in rec.rendered


def test_repair_retry_fixes_one_bad_reply():
    rec, backend = run(f"trace {Q_GENERIC}", faults={"round:2:*": [Fault("empty"), None]})
    assert rec.calls[2].repairs == 1 and rec.calls[2].status == "ok" and len(rec.rounds) == 4
    repair = [r for r in backend.requests if r.tag.startswith("round:2")][1]
    assert "could not be used" in repair.messages[-1]["content"]


def test_transport_retries_are_bounded_and_counted():
    rec, backend = run(
        f"trace {Q_GENERIC}", faults={"round:1:*": [Fault("http_429"), Fault("http_5xx"), None]}
    )
    assert rec.calls[1].retries == 2 and rec.calls[1].status == "ok"
    rec, backend = run(f"trace {Q_GENERIC}", faults={"round:1:*": Fault("http_5xx")})
    assert rec.calls[1].retries == 2 and rec.calls[1].attempts == 3 and rec.calls[1].status == "failed"
    assert rec.halting["reason"] == "round_failed"


def test_every_call_failing_still_ends_with_an_honest_answer():
    rec, _ = run(f"trace {Q_GENERIC}", faults={"*": Fault("http_5xx")})
    assert rec.coda["fallback"] and rec.outcome == "no_answer"
    assert "No answer: the model did not produce one" in rec.rendered
    assert "the server kept failing" in rec.no_answer_reason
    assert "*Fallbacks:" in rec.rendered and rec.totals["calls"] <= 4


def test_hanging_backend_is_bounded_by_the_run_deadline():
    rec, _ = run(
        f"deep {Q_ETHICS}",
        faults={"*": Fault("hang")},
        run_deadline_s=1.5,
        call_deadline_s=5,
        attempt_timeout_s=5,
    )
    assert rec.halting["reason"] == "run_deadline"
    assert all(c.status == "failed" for c in rec.calls) and rec.coda["fallback"]
    assert (
        "run deadline" in rec.rendered
        and "Mode: none (the run stopped before the Prelude finished)" in rec.rendered
    )


def test_token_budget_stops_the_run():
    rec, _ = run(f"trace {Q_GENERIC}", max_tokens=700, halting=False)
    assert rec.halting["reason"] == "budget"
    assert any(c.status == "skipped" and c.error_kind == "budget" for c in rec.calls)
    assert rec.coda["fallback"] and "budget" in rec.rendered


def test_token_accounting_sums_per_phase():
    rec, backend = run(f"deep {Q_ETHICS}")
    words_in = sum(sum(len(m["content"].split()) for m in r.messages) for r in backend.requests)
    assert rec.totals["tokens_in"] == words_in
    assert sum(p["tokens_in"] for p in rec.totals["by_phase"].values()) == words_in
    assert set(rec.totals["by_phase"]) == {"prelude", "subagent", "merge", "coda"}
    assert rec.totals["calls"] == 8


def test_question_is_reinjected_verbatim_in_every_call():
    rec, backend = run(f"trace {Q_GENERIC}")
    assert all(
        Q_GENERIC in r.messages[-1]["content"] for r in backend.requests if not r.tag.startswith("coda")
    )


def test_single_call_silent_strategy():
    rec, _ = run(Q_GENERIC, silent_strategy="single_call")
    assert [c.phase for c in rec.calls] == ["prelude", "silent"]
    assert "Mode: silent (single call)." in rec.rendered


def test_config_validation_names_the_field():
    from mythos.reason import EngineConfig

    with pytest.raises(ValueError, match="max_rounds=2"):
        EngineConfig(max_rounds=2).validate()
    with pytest.raises(ValueError, match="silent_strategy"):
        EngineConfig(silent_strategy="loud").validate()


def test_agent_findings_go_through_the_packet_compiler(tmp_path):
    import json

    rec, backend = run(
        f"deep {Q_ETHICS}", packets=True, packets_dir=str(tmp_path), faults={"sub:B:*": Fault("http_4xx")}
    )
    info = rec.packet
    assert info["used"] and info["blocked"] == ["B"] and info["synthesis_pass_id"] == "pass-0002"
    packet = json.loads(Path(info["packet"]).read_text())
    summaries = {e["id"]: e["summary"] for e in packet["evidence"]}
    assert info["evidence_ids"] == ["ev-sub-a", "ev-sub-c", "ev-sub-d", "ev-sub-e"]
    merge_prompt = next(r for r in backend.requests if r.tag == "merge").messages[-1]["content"]
    assert "from the compiled packet" in merge_prompt
    for sub in rec.subagents:
        if sub.status == "ok":
            assert summaries[sub.packet_evidence_id] == sub.finding and sub.finding in merge_prompt
            assert sub.reasoning not in merge_prompt  # the merge never sees a subagent's raw prose
    assert any(e["kind"] == "blocker" and e.get("lane") == "B-Challenge" for e in packet["evidence"])
    assert rec.merge["source"] == "packet"


def test_packet_failure_falls_back_to_the_record(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    rec, _ = run(f"deep {Q_ETHICS}", packets=True, packets_dir=str(blocker))
    assert rec.packet["used"] is False and rec.merge["source"] == "findings" and rec.coda["final_answer"]


ESCALATE = {
    "round:*": {"status": "evolving"},
    "round:2:*": {"missed_driver": "System dynamics"},
    "reprelude": {
        "complexity_checks": {
            "multi_hop": True,
            "ambiguous_tradeoffs": True,
            "hidden_assumptions": True,
            "high_stakes": True,
        }
    },
}


def test_reprelude_escalates_an_unforced_run_to_agent():
    rec, backend = run(Q_GENERIC, patches=ESCALATE)  # silent by routing, not forced
    assert rec.escalation["from"] == "silent" and rec.escalation["to"] == "agent"
    assert rec.halting["reason"] == "escalated" and len(rec.rounds) == 2
    subs = [r for r in backend.requests if r.tag.startswith("sub:")]
    assert len(subs) >= 3 and all("INSIGHTS ALREADY ESTABLISHED" in r.messages[-1]["content"] for r in subs)
    assert rec.rounds[0].insight in subs[0].messages[-1]["content"]
    assert "Mode: silent → agent (escalated after the re-Prelude at round 2)." in rec.rendered
    assert not ROUND_HEADER.search(rec.rendered)  # still silent on screen


def test_forced_mode_is_not_escalated():
    rec, _ = run(f"trace {Q_GENERIC}", patches=ESCALATE)
    assert rec.escalation is None and rec.reprelude["escalation"].startswith("not performed")
    forced_ok, _ = run(f"trace {Q_GENERIC}", patches=ESCALATE, allow_escalation_of_forced=True)
    assert forced_ok.escalation["to"] == "agent" and "### Subagent A" in forced_ok.rendered
    assert "Mode: trace → agent" in forced_ok.rendered


def test_silent_switches_to_trace_when_the_user_must_verify():
    rec, _ = run(Q_GENERIC, patches={"round:2:*": {"needs_user_verification": True}})
    assert rec.route["final_mode"] == "trace" and rec.escalation["from"] == "silent"
    assert (
        "### Round 1: Clarify" in rec.rendered
        and "Mode: silent → trace (escalated at round 2" in rec.rendered
    )


def test_run_deadline_during_the_fan_out_is_reported_not_hidden():
    rec, _ = run(
        f"deep {Q_ETHICS}",
        latency=lambda tag: 5.0 if tag.startswith("sub:") else 0.0,
        run_deadline_s=2.0,
        call_deadline_s=10,
        attempt_timeout_s=10,
    )
    assert rec.halting["reason"] == "run_deadline" and rec.merge is None
    assert all(s.status == "failed" and "cancelled" in s.error for s in rec.subagents)
    assert "parallel subagents dispatched, not merged (run deadline). Mode: agent." in rec.rendered
    assert "*Fallbacks:" in rec.rendered


@pytest.mark.parametrize(
    "case_id, mode, calls",
    [
        ("Q1", "silent", 5),
        ("Q1", "trace", 5),
        ("Q2", "silent", 7),
        ("Q2", "trace", 7),
        ("Q2", "agent", 8),
        ("Q3", "silent", 5),
        ("Q3", "trace", 5),
        ("Q4", "silent", 6),
        ("Q4", "trace", 6),
        ("Q5", "silent", 7),
        ("Q5", "trace", 7),
        ("Q5", "agent", 8),
    ],
)
def test_exact_call_counts_for_the_calibration_runs(case_id, mode, calls):
    from mythos.reason.calibrate import CASES, invocation_for

    case = next(c for c in CASES if c.id == case_id)
    rec, backend = run(invocation_for(case, mode))
    assert rec.totals["calls"] == calls == len(backend.requests)
    assert rec.totals["tokens_in"] == sum(p["tokens_in"] for p in rec.totals["by_phase"].values())
