"""Calibration: the five calibration questions across modes, scored from the run records (the library
behind ``mythos calibrate``; the command lives in ``cli.py``).

Two scores, as the protocol asks (§10.2/§10.4): the *upstream-literal* 38 checks of the original runner,
computed automatically, and *engine-extended* checks (footers, halting, budgets, header counts, parallel
evidence). Every check is tagged structural (decided by the engine) or content (decided by the model's
words: keywords, preserved tension). The scripted and replay backends measure structure only: their content
checks are reported as not applicable (their words are canned), never as passed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mythos.reason.backends import LLMBackend
from mythos.reason.engine import Engine, EngineConfig
from mythos.reason.lenses import base_lens
from mythos.reason.record import RunRecord


@dataclass(frozen=True)
class Case:
    id: str
    question: str
    complexity: int
    modes: tuple[str, ...]
    silent_keywords: tuple[str, ...]
    trace_rounds: tuple[int, int]
    trace_lenses: tuple[str, ...]
    agent_min: int | None = None
    agent_lenses: tuple[str, ...] = ()
    silent_max_lenses: int | None = None  # PowerShell runner's extra check
    extra_keywords: tuple[str, ...] = ()  # PowerShell runner's extra keywords
    must_not_mention: tuple[str, ...] = ()


CASES: tuple[Case, ...] = (
    Case(
        "Q1",
        "Should I use SQLite or PostgreSQL for a single-user desktop app?",
        2,
        ("silent", "trace"),
        ("concurrent", "framing"),
        (2, 3),
        ("Challenge",),
        silent_max_lenses=3,
    ),
    Case(
        "Q2",
        "Our startup has 3 months of runway and our product has good reviews but declining retention. "
        "Pivot or stay?",
        4,
        ("silent", "trace", "agent"),
        ("alternative", "pivot", "stay"),
        (4, 5),
        ("Expand", "Scar-Tissue"),
        agent_min=4,
        agent_lenses=("Tradeoff-Map",),
    ),
    Case(
        "Q3",
        "Design a caching strategy for a read-heavy API serving 10M users",
        3,
        ("silent", "trace"),
        ("stampede", "expiry", "cold"),
        (3, 4),
        ("Edge-Hunt",),
        silent_max_lenses=4,
    ),
    Case(
        "Q4",
        "What would make our code review process 10x more effective?",
        3,
        ("silent", "trace"),
        ("bottleneck", "framing", "quality"),
        (3, 4),
        ("Challenge",),
        silent_max_lenses=4,
    ),
    Case(
        "Q5",
        "Is it ethical to train AI on public web data without consent?",
        5,
        ("silent", "trace", "agent"),
        ("tension", "indeterminate"),
        (4, 6),
        ("Steelman",),
        agent_min=4,
        agent_lenses=("Steelman", "Tradeoff-Map"),
        extra_keywords=("framework",),
        must_not_mention=("clear answer", "obviously"),
    ),
)

VISIBLE_ROUNDS = re.compile(r"^#{2,3} (Round|Subagent|Prelude)\b", re.MULTILINE)
FOOTERS = {
    "direct": re.compile(r"^\*Depth: 0 rounds\. Mode: direct\.\*$", re.MULTILINE),
    "silent": re.compile(
        r"^\*Depth: \d+ latent passes\. Mode: silent\. Lens path: .+\.\*$"
        r"|^\*Depth: 1 call \(\d+ lens passes planned, not observable\)\. Mode: silent \(single call\)\. "
        r"Planned lens path: .+\.\*$"
        r"|^\*Lens path: .+\(\d+ rounds?, converged\)\.\*$",
        re.MULTILINE,
    ),
    "trace": re.compile(
        r"^\*Depth: \d+ rounds?( \(\d+ discarded as negative-delta\))?, .+\. Mode: trace\.\*$", re.MULTILINE
    ),
    "agent": re.compile(
        r"^\*Depth: \d+ (parallel subagents merged|latent passes)\. Mode: agent.*\*$", re.MULTILINE
    ),  # noqa: E501
}


STRUCTURE_ONLY = ("scripted", "replay")  # backends whose words are canned: content checks do not apply


@dataclass
class Check:
    name: str
    passed: bool
    kind: str  # structural | content
    suite: str  # upstream | extended
    detail: str = ""
    applicable: bool = True  # False: a content check on a backend that measures structure only


@dataclass
class CaseRun:
    case: Case
    mode: str
    invocation: str
    literal: bool = False  # the upstream-literal invocation of a silent run (reported separately)
    record: RunRecord | None = None
    checks: list[Check] = field(default_factory=list)


def invocation_for(case: Case, mode: str, literal: bool = False) -> str:
    if mode == "trace":
        return f"trace {case.question}"
    if mode == "agent":
        return f"deep {case.question}"
    if case.complexity >= 4 and not literal:  # [D-28]: c>=4 would route to agent without the keyword
        return f"quick {case.question}"
    return case.question


def _answer(rec: RunRecord) -> str:
    return rec.coda.get("final_answer") or ""


def _lens_path(rendered: str) -> list[str]:
    match = re.search(r"Lens path: (.+?)\.\*", rendered)
    return [p.strip() for p in match.group(1).split("→")] if match else []


def score(run: CaseRun) -> list[Check]:
    rec, case, mode = run.record, run.case, run.mode
    assert rec is not None
    text = rec.rendered
    checks: list[Check] = []

    structure_only = rec.backend.get("name") in STRUCTURE_ONLY

    def add(
        name: str, passed: bool, kind: str = "structural", suite: str = "upstream", detail: str = ""
    ) -> None:
        if kind == "content" and structure_only:
            checks.append(Check(name, False, kind, suite, "not applicable: canned words", applicable=False))
            return
        checks.append(Check(name, bool(passed), kind, suite, detail))

    if mode == "silent":
        add(
            "no visible rounds",
            not VISIBLE_ROUNDS.search(text)
            and "**Convergence:**" not in text
            and rec.route.get("final_mode") == "silent",
            detail=f"mode {rec.route.get('final_mode')}",
        )
        for word in case.silent_keywords:
            add(f"answer mentions '{word}'", re.search(word, _answer(rec), re.IGNORECASE), "content")
        for word in case.extra_keywords:
            add(
                f"answer mentions '{word}' (PowerShell runner)",
                re.search(word, _answer(rec), re.IGNORECASE),
                "content",
                "extended",
            )
        if case.silent_max_lenses is not None:
            n = len(_lens_path(text))
            add(
                f"footer lens count <= {case.silent_max_lenses}",
                0 < n <= case.silent_max_lenses,
                suite="extended",
                detail=f"{n} lenses",
            )
    elif mode == "trace":
        n = len(rec.rounds)
        lo, hi = case.trace_rounds
        add(f"round count in {lo}-{hi}", lo <= n <= hi, detail=f"{n} rounds")
        applied = {base_lens(r.lens) for r in rec.rounds}
        for lens in case.trace_lenses:
            add(f"lens {lens} applied", lens in applied, detail=", ".join(r.lens for r in rec.rounds))
        headers = len(re.findall(r"^### Round \d+", text, re.MULTILINE))
        add("rendered rounds == recorded rounds", headers == n, suite="extended", detail=f"{headers} vs {n}")
    else:
        subs = rec.subagents
        calls = [c for c in rec.calls if c.phase == "subagent"]
        add(f"subagents >= {case.agent_min}", len(subs) >= (case.agent_min or 3), detail=f"{len(subs)}")
        overlap = bool(calls) and max(c.t_start for c in calls) < min(c.t_end for c in calls)
        add("dispatched in parallel", overlap)
        dispatched = {base_lens(s.lens_id) for s in subs}
        for lens in case.agent_lenses:
            add(f"lens {lens} dispatched", lens in dispatched, detail=", ".join(s.lens_id for s in subs))
        tensions = (rec.merge or {}).get("tensions") or []
        markers = [m for m in ("clear answer", "obviously") if m in _answer(rec).lower()]
        add(
            "merge preserved tension",
            bool(tensions) and not markers,
            "content",
            detail=f"{len(tensions)} tensions{', markers: ' + ', '.join(markers) if markers else ''}",
        )
        add(
            "subagent headers == recorded subagents",
            len(re.findall(r"^### Subagent [A-Z] — ", text, re.MULTILINE)) == len(subs),
            suite="extended",
        )
        if len(calls) >= 3:
            wall = max(c.t_end for c in calls) - min(c.t_start for c in calls)
            total = sum(c.t_end - c.t_start for c in calls)
            add(
                "wall <= 0.6 x summed call time",
                total > 0 and wall <= 0.6 * total,
                suite="extended",
                detail=f"{wall:.3f}s vs {total:.3f}s",
            )
        add("3-5 subagents", 3 <= len(subs) <= 5, suite="extended")
    final = rec.route.get("final_mode")
    add(
        "footer matches the mode",
        FOOTERS.get(final, FOOTERS["direct"]).search(text),
        suite="extended",
        detail=(rec.footer.splitlines() or [""])[0],
    )
    add(f"routed to {mode}", final == mode, suite="extended", detail=f"{final}")
    if mode in ("silent", "trace"):
        add(
            "halting reason recorded",
            rec.halting.get("reason")
            in ("negative_delta", "no_delta", "trivial_delta", "self_consistent", "max_rounds"),
            suite="extended",
            detail=str(rec.halting.get("reason")),
        )
        total = sum(b["count"] for b in rec.budget)
        add("budget within 4-8 rounds", 4 <= total <= 8, suite="extended", detail=f"{total}")
    for word in case.must_not_mention:
        add(f"answer avoids '{word}'", word not in _answer(rec).lower(), "content", "extended")
    add("no fallbacks taken", not rec.fallbacks, suite="extended", detail="; ".join(rec.fallbacks))
    return checks


async def run_calibration(
    backend: LLMBackend, config: EngineConfig, case_ids: list[str] | None = None, include_literal: bool = True
) -> list[CaseRun]:
    runs: list[CaseRun] = []
    for case in CASES:
        if case_ids and case.id not in case_ids:
            continue
        for mode in case.modes:
            runs.append(CaseRun(case, mode, invocation_for(case, mode)))
            if include_literal and mode == "silent" and case.complexity >= 4:
                runs.append(CaseRun(case, mode, invocation_for(case, mode, literal=True), literal=True))
    for run in runs:
        run.record = await Engine(backend, config).run(run.invocation)
        run.checks = score(run)
    return runs


def summarize(runs: list[CaseRun]) -> dict:
    def tally(checks: list[Check]) -> dict:
        scored = [c for c in checks if c.applicable]
        passed = sum(c.passed for c in scored)
        return {
            "checks": len(checks),
            "pass": passed,
            "fail": len(scored) - passed,
            "not_applicable": len(checks) - len(scored),
            "pass_rate": round(100.0 * passed / len(scored), 1) if scored else None,
        }

    main = [r for r in runs if not r.literal]
    all_checks = [c for r in main for c in r.checks]
    out = {
        "upstream_literal": tally([c for c in all_checks if c.suite == "upstream"]),
        "structural": tally([c for c in all_checks if c.kind == "structural"]),
        "content": tally([c for c in all_checks if c.kind == "content"]),
        "engine_extended": tally(all_checks),
        "by_mode": {
            mode: tally([c for r in main if r.mode == mode for c in r.checks])
            for mode in ("silent", "trace", "agent")
        },
        "literal_silent_variants": tally(
            [c for r in runs if r.literal for c in r.checks if c.suite == "upstream"]
        ),
        "runs": len(main),
    }
    return out


def report_markdown(runs: list[CaseRun], summary: dict, backend: LLMBackend, stamp: str) -> str:
    lines = [
        f"# mythos calibration report — {stamp}",
        "",
        f"Backend: `{backend.name}` model `{backend.model}`. {summary['runs']} runs "
        "(silent runs of the c>=4 cases use `quick`, [D-28]; their literal upstream invocations are scored "
        "separately at the end).",
        "",
        "Content checks on the scripted/replay backends are not applicable (n/a): their words are canned.",
        "",
        "| score | checks | pass | fail | n/a | pass % of applicable |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in ("upstream_literal", "structural", "content", "engine_extended"):
        t = summary[key]
        lines.append(
            f"| {key.replace('_', ' ')} | {t['checks']} | {t['pass']} | {t['fail']} | {t['not_applicable']} "
            f"| {t['pass_rate'] if t['pass_rate'] is not None else 'n/a'} |"
        )
    lines += ["", "| mode | checks | pass | fail | n/a | pass % |", "|---|---:|---:|---:|---:|---:|"]
    for mode, t in summary["by_mode"].items():
        rate = t["pass_rate"] if t["pass_rate"] is not None else "n/a"
        lines.append(
            f"| {mode} | {t['checks']} | {t['pass']} | {t['fail']} | {t['not_applicable']} | {rate} |"
        )
    for run in runs:
        rec = run.record
        assert rec is not None
        title = f"{run.case.id} — {run.mode}" + (" (upstream-literal invocation)" if run.literal else "")
        lines += [
            "",
            f"## {title}",
            f"Invocation: `mythos think {run.invocation}`",
            f"Route: {rec.route.get('final_mode')} (score {rec.route.get('score')}); calls "
            f"{rec.totals.get('calls')}, tokens {rec.totals.get('tokens')}, wall {rec.totals.get('wall_s')} s",
            "",
        ]
        for check in run.checks:
            mark = "N/A" if not check.applicable else "PASS" if check.passed else "FAIL"
            detail = f" — {check.detail}" if check.detail else ""
            lines.append(f"- [{mark}] {check.name} ({check.kind}, {check.suite}){detail}")
    t = summary["literal_silent_variants"]
    lines += [
        "",
        "## Upstream-literal silent invocations of Q2/Q5",
        f"{t['pass']}/{t['checks']} upstream checks pass. Without `quick` these c>=4 questions route to "
        "agent mode by the protocol's own table, so 'no visible rounds' is expected to fail here.",
        "",
        "## If checks fail",
        "- silent shows rounds: routing is broken (check the route in the run record).",
        "- trace skips Challenge/Expand: the budget or the Prelude's problem type is off.",
        "- agent not parallel: look at max_concurrency and the server's slot count.",
        "- keywords / tension missing: a content check — the model, not the engine, decides these.",
    ]
    return "\n".join(lines) + "\n"


def write_report(runs: list[CaseRun], summary: dict, backend: LLMBackend, out: Path, stamp: str) -> Path:
    """Write the markdown report and its JSON twin (atomically) under ``out``; returns the markdown path."""
    from mythos.reason.config import write_atomic

    path = out / f"calibration-report-{stamp}.md"
    write_atomic(path, report_markdown(runs, summary, backend, stamp))
    payload = {
        "summary": summary,
        "runs": [
            {
                "case": r.case.id,
                "mode": r.mode,
                "invocation": r.invocation,
                "literal": r.literal,
                "checks": [c.__dict__ for c in r.checks],
                "record": r.record.to_dict() if r.record else None,
            }
            for r in runs
        ],
    }
    write_atomic(
        path.with_suffix(".json"), json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    )
    return path
