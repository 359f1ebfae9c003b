"""Render a finished run record in the protocol's visible shapes (direct, silent, trace, agent) + footer."""

from __future__ import annotations

from typing import Any

from mythos.reason.record import RunRecord


def _prelude_block(
    rec: RunRecord, mode: str, heading: str = "## Prelude", prelude: dict | None = None
) -> list[str]:
    p = prelude or rec.prelude
    route = rec.route
    forced = " (forced)" if route.get("forced") else ""
    if mode == "agent":
        total = len(rec.agent_lenses)
    else:
        total = sum(item["count"] for item in (p.get("budget") or rec.budget))
    lines = [
        heading,
        f"**Q:** {p.get('question_restated', '')} | **Not:** {'; '.join(p.get('not_asking') or ['—'])}",
        f"**Complexity:** {p.get('complexity')}/5 → {mode} mode{forced}, {total} total | "
        f"**Drivers:** {', '.join(p.get('primary_drivers') or ['—'])}",
    ]
    if mode == "agent":
        lines.append(
            "**Lenses dispatched in parallel:** " + ", ".join(a["lens_id"] for a in rec.agent_lenses)
        )
    else:
        budget = p.get("budget") or rec.budget
        line = "**Budget:** " + " → ".join(f"{item['lens']} ×{item['count']}" for item in budget)
        if p.get("problem_type", "standard") != "standard" and p.get("sequence_reason"):
            line += f" (sequence: {p['problem_type']} — {p['sequence_reason']})"
        lines.append(line)
    lines.append(f"**Success:** {p.get('success_criterion') or '—'}")
    return lines


def _round_blocks(rec: RunRecord) -> list[str]:
    out: list[str] = []
    reprelude_after = rec.reprelude.get("after_round") if rec.reprelude else None
    accepted: list[tuple[int, str]] = []
    for rnd in rec.rounds:
        suffix = ""
        if rnd.application == 2:
            suffix = f" (2nd round{', ' + rnd.driver + ' ×2' if rnd.driver else ''})"
        out += ["", f"### Round {rnd.number}: {rnd.lens}{suffix}"]
        if accepted:
            out.append("**Insight chain:** " + " → ".join(f"R{n}: {s}" for n, s in accepted))
        if rnd.status == "failed":
            out.append(f"**New insight:** none — the round failed ({rnd.note})")
            out.append("**Convergence:** halt (round failed)")
        elif rnd.discarded:
            out.append("**New insight (DISCARDED — negative delta):** withheld; it degraded the analysis")
            out.append("**Convergence:** negative-delta — discard, halt")
        elif rnd.insight is None:
            out.append("**New insight:** none — no delta (rephrasing is not an insight)")
            out.append("**Convergence:** no delta — halt")
        else:
            out.append(f"**New insight:** {rnd.insight}")
            out.append(f"**What changed:** {rnd.what_changed or '—'}")
            out.append(f"**Convergence:** {rnd.status}")
            accepted.append((rnd.number, rnd.insight))
        if reprelude_after == rnd.number and rec.reprelude:
            out += [""] + _prelude_block(
                rec,
                rec.route.get("final_mode", "trace"),
                f"## Prelude (re-Prelude after Round {rnd.number})",
                rec.reprelude.get("prelude"),
            )
    return out


def _agent_blocks(rec: RunRecord) -> list[str]:
    out = [
        "",
        f"[Dispatching {len(rec.subagents)} parallel subagents: "
        f"{', '.join(s.lens_id for s in rec.subagents)}]",
    ]
    for sub in rec.subagents:
        out += ["", f"### Subagent {sub.letter} — {sub.lens_id}"]
        if sub.status in ("failed", "recovery_failed") or (sub.status == "recovered" and sub.finding is None):
            out.append(f"[Subagent {sub.letter} — failed: {sub.error or 'unknown error'}]")
            if sub.status == "recovery_failed":
                out.append("(the orchestrator's single-pass recovery of this lens failed too)")
            continue
        recovered = (
            " (recovered by the orchestrator after the subagent failed)" if sub.status == "recovered" else ""
        )
        out.append(f"**Independent finding:** {sub.finding}{recovered}")
        conf = sub.confidence + (" — flagged low-confidence for the merge" if sub.low_confidence else "")
        out.append(f"**Confidence:** {conf}")
        if sub.tension_flag:
            out.append(f"**Tension flag:** {sub.tension_flag}")
    merge = rec.merge
    if merge and not merge.get("silent"):
        out += [
            "",
            "### Merge",
            "**Convergent points:** " + ("; ".join(merge.get("convergent_points") or []) or "none"),
        ]
        tensions = merge.get("tensions") or []
        if tensions:
            text = "; ".join(
                f"{'/'.join(t.get('between') or []) or '?'}: {t.get('claim', '')}"
                f" (better supported: {t.get('better_supported', 'neither')})"
                for t in tensions
            )
        else:
            text = "none surfaced"
        out += [f"**Tensions:** {text}", f"**Synthesis:** {merge.get('synthesis', '')}"]
    return out


def _vote_line(rec: RunRecord) -> list[str]:
    vote = rec.vote
    if not vote or not vote.get("discrete"):
        return []
    parts = []
    for c in vote["candidates"]:
        verdict = f", verifier: {c['verdict']}" if c.get("verdict") else ""
        parts.append(f"{c['answer']!r} {c['count']}/{vote['voters']}{verdict}")
    decision = f"{vote['winner']!r} ({vote['decided_by']})" if vote.get("winner") else vote.get("decided_by")
    return ["", f"**Vote:** {'; '.join(parts)} → {decision}"]


def footer(rec: RunRecord) -> str:
    mode = rec.route.get("final_mode", "direct")
    coda: dict[str, Any] = rec.coda
    assumptions = coda.get("load_bearing_assumptions") or "none stated"
    halting = rec.halting
    if mode == "direct":
        lines = ["*Depth: 0 rounds. Mode: direct.*"]
    elif mode == "none":
        lines = ["*Depth: 0 rounds. Mode: none (the run stopped before the Prelude finished).*"]
    elif mode == "silent":
        path = " → ".join(r.lens for r in rec.rounds) or " → ".join(
            item["lens"] for item in rec.budget for _ in range(item["count"])
        )
        n = len(rec.rounds) if rec.rounds else sum(item["count"] for item in rec.budget)
        esc = rec.escalation
        if rec.halting.get("reason") == "single_call":
            # one call was made; the lens passes inside it were asked for, not observed
            planned = sum(item["count"] for item in rec.budget)
            lines = [
                f"*Depth: 1 call ({planned} lens passes planned, not observable). Mode: silent (single call). "
                f"Planned lens path: {path}.*"
            ]
        elif esc and esc.get("to") == "agent":
            k = len(rec.subagents)
            lines = [
                f"*Depth: {n} latent passes + {k} parallel subagents merged. Mode: silent → agent (escalated "
                f"after the re-Prelude at round {esc['after_round']}). Lens path: {path}.*"
            ]
        else:
            lines = [f"*Depth: {n} latent passes. Mode: silent. Lens path: {path}.*"]
    elif mode == "trace":
        n = len(rec.rounds)
        discarded = sum(1 for r in rec.rounds if r.discarded)
        depth = f"{n} round{'s' if n != 1 else ''}" + (
            f" ({discarded} discarded as negative-delta)" if discarded else ""
        )
        reason = halting.get("reason")
        at = halting.get("at_round")
        if reason == "negative_delta":
            how = "converged early"
        elif reason in ("no_delta", "trivial_delta", "self_consistent"):
            how = f"converged at round {at}"
        elif reason == "max_rounds":
            how = "stopped at the round budget"
        elif reason == "round_failed":
            how = f"halted at round {at} (the round failed)"
        else:
            how = f"halted ({(reason or 'unknown').replace('_', ' ')})"
        esc = rec.escalation
        if esc and esc.get("to") == "agent":
            lines = [
                f"*Depth: {depth} + {len(rec.subagents)} parallel subagents merged. Mode: trace → agent "
                f"(escalated after the re-Prelude at round {esc['after_round']}).*"
            ]
        elif esc and esc.get("from") == "silent":
            lines = [
                f"*Depth: {depth}, {how}. Mode: silent → trace (escalated at round {esc['after_round']}: "
                "a claim needs your verification).*"
            ]
        else:
            lines = [f"*Depth: {depth}, {how}. Mode: trace.*"]
    else:  # agent
        n = len(rec.subagents)
        row = rec.fallback_row
        if row == "all_failed":
            passes = len(rec.rounds)
            path = " → ".join(r.lens for r in rec.rounds)
            lines = [
                f"*Depth: {passes} latent passes. Mode: agent → silent (all subagents failed)."
                + (f" Lens path: {path}." if path else "")
                + "*"
            ]
        elif row == "recovered":
            won = sum(1 for s in rec.subagents if s.status == "recovered")
            lost = sum(1 for s in rec.subagents if s.status in ("recovery_failed", "failed"))
            no_insight = sum(
                1 for s in rec.subagents if s.status == "no_insight" and s.recovery_call is not None
            )
            k = won + lost + no_insight
            if lost == 0:
                how = "recovered via silent single-pass"
            elif won + no_insight == 0:
                how = "not recovered: the single-pass recovery failed too"
            else:
                how = f"{won + no_insight} recovered via silent single-pass, {lost} not recovered"
            lines = [f"*Depth: {n} parallel subagents merged. Mode: agent ({k} subagents failed; {how}).*"]
        elif rec.merge is None:  # the run stopped (deadline, budget) before the merge
            reason = (halting.get("reason") or "unknown").replace("_", " ")
            lines = [f"*Depth: {n} parallel subagents dispatched, not merged ({reason}). Mode: agent.*"]
        else:
            lines = [f"*Depth: {n} parallel subagents merged. Mode: agent.*"]
    if mode not in ("direct", "none"):
        lines.append(f"*Load-bearing assumptions: {assumptions}*")
    if rec.fallbacks:
        lines.append("*Fallbacks: " + "; ".join(rec.fallbacks) + ".*")
    return "\n".join(lines)


def render(rec: RunRecord) -> str:
    mode = rec.route.get("final_mode", "direct")
    body: list[str] = []
    if mode == "trace" or (mode == "agent" and rec.fallback_row != "all_failed"):
        body += _prelude_block(rec, mode)
        body += _round_blocks(rec) if mode == "trace" else _agent_blocks(rec)
        if mode == "trace" and rec.escalation and rec.escalation.get("to") == "agent":
            body += _agent_blocks(rec)
        body += _vote_line(rec)
        body.append("")
    elif mode == "direct" and rec.config.get("show_prelude_for_direct") and rec.prelude:
        p = rec.prelude
        body += [
            "## Prelude",
            f"**Q:** {p.get('question_restated', '')} | **Not:** {'; '.join(p.get('not_asking') or ['—'])}",
            "**Complexity:** 1/5 → direct, no rounds",
            "",
        ]
    answer = rec.coda.get("final_answer") or "(no answer)"
    # a run without a real answer keeps the heading (tools look for it); its first line says "No answer: …"
    body += ["## Answer", answer, "", "---", rec.footer or footer(rec)]
    return "\n".join(body) + "\n"
