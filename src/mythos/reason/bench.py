"""``mythos bench``: does the protocol answer more questions right than the prompts a user would try first?

Each question is put to every strategy on the same backend with the same token ceiling (``budget``, tokens in
+ out for the whole question): three baselines — a plain answer (``direct``), ``step-by-step``, and
``self-consistency`` (majority of N sampled step-by-step replies) — and the engine's ``silent``, ``trace``
and ``agent`` modes, run through ``think`` exactly as ``mythos think --mode M`` runs them. Every reply goes
through the same answer extraction and checks (``bench_check``).

A run is a directory: ``run.json`` (the settings; a resume must match them), ``results.jsonl`` (one line per
question × strategy, appended and fsync'd as each finishes — so a killed run resumes where it stopped) and the
summary files (``summary.json``, ``summary.md``, ``summary.png``) rebuilt from the results after every run.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mythos.reason.backends import BackendError, Completion, LLMBackend, Message
from mythos.reason.bench_check import RECHECKABLE, canonical, classify, extract_answer
from mythos.reason.bench_questions import BenchQuestion
from mythos.reason.calls import CallPolicy
from mythos.reason.config import write_atomic
from mythos.reason.engine import EngineConfig, think

BASELINES = ("direct", "step-by-step", "self-consistency")
MODES = ("silent", "trace", "agent")
STRATEGIES = BASELINES + MODES

DIRECT_SYSTEM = "Answer the question directly. Reply with the final answer only, no explanation."
STEP_SYSTEM = "Think step by step. Then give the final answer."
FORMAT = {
    "number": "\n\nGive the final answer as a number on the last line, as: Answer: <number>",
    "exact": "\n\nGive the final answer as a name on the last line, as: Answer: <name>",
    "open": "",
}
NO_ANSWER_PREFIXES = ("No answer could be produced", "No answer:")
JUDGE_SYSTEM = (
    "You compare two responses to the same question. Judge which one answers it better: correct, specific, "
    "and useful. Reply with exactly one of: 1, 2, tie."
)


class BenchSettingsMismatch(ValueError):
    """A resumed run directory holds results made with different settings."""


@dataclass
class BenchConfig:
    """What makes two results comparable: the strategies share ``budget`` and ``max_tokens_per_call``."""

    strategies: tuple[str, ...] = STRATEGIES
    budget: int = 2000  # tokens in + out per question and strategy
    max_tokens_per_call: int = 256
    votes: int = 5
    vote_temperature: float = 0.7
    call_deadline_s: float = 180.0
    attempt_timeout_s: float = 180.0
    run_deadline_s: float = 900.0
    max_retries: int = 1
    concurrency: int = 1  # agent fan-out; set it to the server's slot count
    time_limit_s: float | None = None  # stop starting new items after this long (the run stays resumable)
    judge: tuple[str, str] | None = None  # blind pairwise judge on open questions: strategy A vs B

    def validate(self) -> BenchConfig:
        def bad(name: str, value: Any, fix: str) -> ValueError:
            return ValueError(f"{name}={value!r} is invalid: {fix}")

        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise bad("--strategies", ",".join(self.strategies), f"use some of {','.join(STRATEGIES)}")
        if self.budget < 16:
            raise bad("--budget", self.budget, "use a token count of 16 or more")
        if not 1 <= self.max_tokens_per_call <= self.budget:
            raise bad("--max-tokens-per-call", self.max_tokens_per_call, f"use 1..--budget ({self.budget})")
        if not 1 <= self.votes <= 64:
            raise bad("--votes", self.votes, "use 1..64")
        if not 0 <= self.vote_temperature <= 2:
            raise bad("--vote-temperature", self.vote_temperature, "use 0..2")
        for name in ("call_deadline_s", "attempt_timeout_s", "run_deadline_s"):
            if getattr(self, name) <= 0:
                raise bad(name, getattr(self, name), "use a positive number of seconds")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise bad("--time-limit", self.time_limit_s, "use a positive number of seconds")
        if self.concurrency < 1:
            raise bad("--concurrency", self.concurrency, "use 1 or more")
        if self.judge is not None:
            a, b = self.judge
            if a == b or a not in self.strategies or b not in self.strategies:
                raise bad("--judge", f"{a},{b}", "name two different strategies that are in --strategies")
        return self

    def comparable(self) -> dict[str, Any]:
        """The settings a resumed run must share with the results already on disk."""
        keys = ("budget", "max_tokens_per_call", "votes", "vote_temperature")
        return {k: getattr(self, k) for k in keys}


class RecordingBackend:
    """Passes calls through and keeps what was sent, for the template check and the token count."""

    def __init__(self, inner: LLMBackend):
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.sent: list[str] = []
        self.calls = 0
        self.tokens = 0
        self.truncated = False

    async def complete(self, messages: list[Message], **kwargs) -> Completion:
        self.sent.extend(m["content"] for m in messages)
        self.calls += 1
        reply = await self.inner.complete(messages, **kwargs)
        self.tokens += reply.tokens_in + reply.tokens_out
        self.truncated = self.truncated or reply.finish_reason == "length"
        return reply

    async def aclose(self) -> None:  # the harness owns the inner backend
        return None


class ResultsLog:
    """``results.jsonl``: append-only, one fsync'd line per finished item; a torn last line is dropped."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        if not self.path.exists():
            return rows
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # killed mid-write: cut back to the last whole line
            data = data[: data.rfind(b"\n") + 1]
            with open(self.path, "r+b") as handle:
                handle.truncate(len(data))
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "key" in row:
                rows[row["key"]] = row
        return rows

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def prompt_for(question: BenchQuestion) -> str:
    """The question text every strategy receives (with the same answer-format line)."""
    return question.question + FORMAT[question.kind]


async def _single(
    backend: RecordingBackend, system: str, text: str, cfg: BenchConfig, temperature: float, tag: str
) -> Completion:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    return await backend.complete(
        messages,
        max_tokens=cfg.max_tokens_per_call,
        temperature=temperature,
        timeout=cfg.attempt_timeout_s,
        tag=tag,
    )


async def run_baseline(strategy: str, question: BenchQuestion, backend: RecordingBackend, cfg: BenchConfig):
    """(reply text, extra fields). Self-consistency stops sampling before a vote would pass the budget."""
    text = prompt_for(question)
    if strategy == "direct":
        reply = await _single(backend, DIRECT_SYSTEM, text, cfg, 0.0, "bench:direct")
        return reply.text, {}
    if strategy == "step-by-step":
        reply = await _single(backend, STEP_SYSTEM, text, cfg, 0.0, "bench:step-by-step")
        return reply.text, {}
    replies: list[str] = []
    for vote in range(cfg.votes):
        if vote and backend.tokens + backend.tokens / vote > cfg.budget:
            break
        reply = await _single(backend, STEP_SYSTEM, text, cfg, cfg.vote_temperature, f"bench:vote:{vote + 1}")
        replies.append(reply.text)
    spans = [extract_answer(r) for r in replies]
    keys = [canonical(s, question.kind if question.kind == "number" else "exact") for s in spans]
    counts = Counter(k for k in keys if k)
    if not counts:
        return replies[-1] if replies else "", {"votes": keys}
    best = max(counts.values())
    winner = next(k for k in keys if k and counts[k] == best)  # ties: the earliest vote
    # the answer is the winning vote in the canonical form it was counted in (a number, or normalised words)
    return f"Answer: {winner}", {"votes": keys, "vote_share": round(best / len(keys), 3)}


async def run_mode(mode: str, question: BenchQuestion, backend: RecordingBackend, cfg: BenchConfig):
    """The engine's public entry point, configured as ``mythos think --mode MODE --max-tokens BUDGET``."""
    engine_cfg = EngineConfig(
        mode=mode,
        max_tokens=cfg.budget,
        max_concurrency=cfg.concurrency,
        run_deadline_s=cfg.run_deadline_s,
        packets=False,
        policy=CallPolicy(
            call_deadline_s=cfg.call_deadline_s,
            attempt_timeout_s=cfg.attempt_timeout_s,
            max_retries=cfg.max_retries,
            max_tokens_per_call=cfg.max_tokens_per_call,
            temperature=0.0,
        ),
    )
    record = await think(prompt_for(question), backend, engine_cfg)
    extra = {
        # the engine's own verdict where it gives one ("answered" | "no_answer"); older records have none
        "engine_outcome": getattr(record, "outcome", None),
        "fallback": bool(record.coda.get("fallback")),
        "halting": record.halting.get("reason"),
        "final_mode": record.route.get("final_mode"),
        "failed_calls": record.totals.get("failed_calls", 0),
        "engine_tokens": record.totals.get("tokens", 0),
    }
    return str(record.coda.get("final_answer") or ""), extra


async def run_item(strategy: str, question: BenchQuestion, inner: LLMBackend, cfg: BenchConfig) -> dict:
    """One question × strategy → one result row."""
    backend = RecordingBackend(inner)
    t0 = time.perf_counter()
    error = None
    try:
        runner = run_baseline if strategy in BASELINES else run_mode
        reply, extra = await runner(strategy, question, backend, cfg)
    except BackendError as exc:
        reply, extra, error = "", {}, f"{exc.kind}: {exc}"
    except Exception as exc:  # a failed item is a result, never the end of the run
        reply, extra, error = "", {}, f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    if error:
        outcome, span = "error", ""
    elif extra.get("engine_outcome") == "no_answer" or (
        extra.get("fallback") and reply.lstrip().startswith(NO_ANSWER_PREFIXES)
    ):
        outcome, span = "no_answer", ""  # the engine says it has no answer: not a wrong answer
    else:
        outcome, span = classify(
            reply,
            expected=question.answer,
            kind=question.kind,
            question=question.question,
            prompt_text="\n".join(backend.sent),
            choices=question.choices,
        )
    return {
        "key": f"{question.id}|{strategy}",
        "question_id": question.id,
        "set": question.set,
        "kind": question.kind,
        "strategy": strategy,
        "expected": question.answer,
        "answer": span[:500],
        "reply": reply[:8000],
        "outcome": outcome,
        "tokens": backend.tokens,
        "calls": backend.calls,
        "wall_s": round(wall, 3),
        "over_budget": backend.tokens > cfg.budget,
        "truncated": backend.truncated,
        "error": error,
        **extra,
    }


def parse_verdict(text: str) -> str:
    """``1``, ``2`` or ``tie`` from a judge's reply (the first one it states), else ``invalid``."""
    low = text.strip().lower()
    for word in low.replace(".", " ").replace(",", " ").split():
        if word in ("1", "2", "tie"):
            return word
    return "invalid"


async def run_judge(question: BenchQuestion, a: dict, b: dict, judge: LLMBackend, cfg: BenchConfig) -> dict:
    """Blind pairwise grading: the judge sees two unlabeled answers twice, positions swapped; a verdict
    counts only when both orders agree (position bias shows up as ``inconsistent``)."""
    a_name, b_name = cfg.judge or ("A", "B")
    backend = RecordingBackend(judge)
    t0 = time.perf_counter()
    verdicts: list[str] = []
    for first, second, names in ((a, b, (a_name, b_name)), (b, a, (b_name, a_name))):
        text = (
            f"Question: {question.question}\n\nResponse 1:\n{first['reply'][:3000]}\n\n"
            f"Response 2:\n{second['reply'][:3000]}\n\nWhich response is better? Reply 1, 2 or tie."
        )
        try:
            reply = await _single(backend, JUDGE_SYSTEM, text, cfg, 0.0, "bench:judge")
            verdict = parse_verdict(reply.text)
        except BackendError as exc:
            verdict = f"error:{exc.kind}"
        verdicts.append({"1": names[0], "2": names[1]}.get(verdict, verdict))
    if any(v == "invalid" or v.startswith("error") for v in verdicts):
        result = "invalid"
    else:
        result = verdicts[0] if verdicts[0] == verdicts[1] else "inconsistent"
    return {
        "key": f"{question.id}|judge:{a_name}|{b_name}",
        "question_id": question.id,
        "set": question.set,
        "kind": "judge",
        "strategy": f"judge:{a_name}|{b_name}",
        "verdicts": verdicts,
        "result": result,
        "tokens": backend.tokens,
        "calls": backend.calls,
        "wall_s": round(time.perf_counter() - t0, 3),
    }


@dataclass
class BenchOutcome:
    out_dir: Path
    ran: int = 0
    skipped: int = 0  # already in results.jsonl
    pending: int = 0  # not started: the time limit was reached
    errors: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.pending == 0


def prepare_run_dir(out_dir: Path, cfg: BenchConfig, meta: dict[str, Any]) -> None:
    """Create ``run.json``, or check that the existing one was made with comparable settings."""
    path = out_dir / "run.json"
    wanted = {"settings": cfg.comparable(), "backend": meta.get("backend", {})}
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchSettingsMismatch(f"{path} is unreadable ({exc}); use a new --out directory") from None
        for section in ("settings", "backend"):
            for key, value in wanted[section].items():
                if saved.get(section, {}).get(key) != value:
                    raise BenchSettingsMismatch(
                        f"{out_dir} holds results made with {key}={saved.get(section, {}).get(key)!r}, "
                        f"not {value!r}: rerun with the same settings to resume, or use a new --out directory"
                    )
        return
    write_atomic(path, json.dumps({**wanted, "config": asdict(cfg), **meta}, indent=2, sort_keys=True) + "\n")


async def run_bench(
    questions: list[BenchQuestion],
    backend: LLMBackend,
    cfg: BenchConfig,
    out_dir: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    judge_backend: LLMBackend | None = None,
    progress: Callable[[dict], None] | None = None,
) -> BenchOutcome:
    """Run every question × strategy not yet in ``out_dir``, question by question, then write the summary.

    Items run question-major (every strategy on question 1, then question 2 …) so that a run stopped by its
    time limit still compares the strategies on the same questions.
    """
    cfg.validate()
    out = Path(out_dir)
    meta = meta or {}
    prepare_run_dir(out, cfg, meta)
    log = ResultsLog(out / "results.jsonl")
    rows = log.load()
    result = BenchOutcome(out_dir=out)
    t0 = time.monotonic()
    for question in questions:
        keys = [f"{question.id}|{s}" for s in cfg.strategies]
        if cfg.judge and question.kind == "open":
            keys.append(f"{question.id}|judge:{cfg.judge[0]}|{cfg.judge[1]}")
        for key in keys:
            if key in rows:
                result.skipped += 1
                continue
            # every invocation makes progress: the limit is checked only after the first item
            if cfg.time_limit_s is not None and result.ran and time.monotonic() - t0 > cfg.time_limit_s:
                result.pending += 1
                continue
            strategy = key.split("|", 1)[1]
            if strategy.startswith("judge:"):
                a, b = (rows.get(f"{question.id}|{s}") for s in cfg.judge)
                row = await run_judge(question, a, b, judge_backend or backend, cfg)
            else:
                row = await run_item(strategy, question, backend, cfg)
                result.errors += row["outcome"] == "error"
            log.append(row)
            rows[key] = row
            result.ran += 1
            if progress:
                progress(row)
    by_id = {q.id: q for q in questions}
    current = [recheck(r, by_id[r["question_id"]]) for r in rows.values() if r["question_id"] in by_id]
    result.summary = summarize(current, cfg, meta)
    result.summary["complete"] = result.complete
    write_summary(out, result.summary)
    return result


def recheck(row: dict, question: BenchQuestion) -> dict:
    """The row with its outcome decided again from the stored reply by the current checker, so a summary
    never mixes checker versions (template and error outcomes depend on more than the reply and stay)."""
    if row.get("kind") == "judge" or row.get("outcome") not in RECHECKABLE:
        return row
    outcome, span = classify(
        row["reply"],
        expected=question.answer,
        kind=question.kind,
        question=question.question,
        choices=question.choices,
    )
    return {**row, "outcome": outcome, "answer": span[:500]} if outcome != row["outcome"] else row


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval for an accuracy: honest about how little 20 questions can show."""
    if n == 0:
        return 0.0, 0.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)


def summarize(rows: list[dict], cfg: BenchConfig, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per strategy: accuracy (with a 95 % interval), outcome counts, tokens, calls, wall time."""
    per: dict[str, Any] = {}
    base_tokens = None
    for strategy in cfg.strategies:
        mine = [r for r in rows if r.get("strategy") == strategy]
        checked = [r for r in mine if r["kind"] != "open"]
        correct = sum(r["outcome"] == "correct" for r in checked)
        counts = Counter(r["outcome"] for r in mine)
        tokens = [r["tokens"] for r in mine]
        walls = [r["wall_s"] for r in mine]
        by_set = {}
        for name in sorted({r["set"] for r in checked}):
            part = [r for r in checked if r["set"] == name]
            by_set[name] = {"n": len(part), "correct": sum(r["outcome"] == "correct" for r in part)}
        per[strategy] = {
            "n": len(mine),
            "checked": len(checked),
            "correct": correct,
            "accuracy": round(correct / len(checked), 4) if checked else None,
            "ci95": wilson(correct, len(checked)),
            "outcomes": {k: counts.get(k, 0) for k in ("correct", "wrong", "template", "echo", "no_answer")}
            | {"error": counts.get("error", 0), "open": counts.get("open", 0)},
            "fallback": sum(bool(r.get("fallback")) for r in mine),
            "over_budget": sum(bool(r.get("over_budget")) for r in mine),
            "truncated": sum(bool(r.get("truncated")) for r in mine),
            "tokens_mean": round(statistics.fmean(tokens), 1) if tokens else 0,
            "tokens_median": statistics.median(tokens) if tokens else 0,
            "calls_mean": round(statistics.fmean(r["calls"] for r in mine), 2) if mine else 0,
            "wall_s_mean": round(statistics.fmean(walls), 2) if walls else 0,
            "wall_s_median": round(statistics.median(walls), 2) if walls else 0,
            "by_set": by_set,
        }
        if strategy == "step-by-step" and tokens:
            base_tokens = statistics.fmean(tokens)
    for stats in per.values():
        stats["tokens_vs_step_by_step"] = (
            round(stats["tokens_mean"] / base_tokens, 2) if base_tokens and stats["n"] else None
        )
    judged = [r for r in rows if r.get("kind") == "judge"]
    judge = None
    if judged and cfg.judge:
        results = Counter(r["result"] for r in judged)
        judge = {"pair": list(cfg.judge), "n": len(judged), "results": dict(sorted(results.items()))}
    return {"meta": meta or {}, "config": asdict(cfg), "strategies": per, "judge": judge}


def render_markdown(summary: dict[str, Any]) -> str:
    """The results table (and per-set accuracy, and the judge's tally) as markdown."""
    meta, per = summary.get("meta", {}), summary["strategies"]
    cfg = summary["config"]
    lines = []
    if meta.get("title"):
        lines += [f"# {meta['title']}", ""]
    for key in ("command", "model", "backend_url", "engine_commit", "machine", "started_at"):
        if meta.get(key):
            lines.append(f"- {key.replace('_', ' ')}: `{meta[key]}`")
    lines.append(
        f"- budget: {cfg['budget']} tokens (in + out) per question and strategy; {cfg['max_tokens_per_call']} "
        f"per call; self-consistency: up to {cfg['votes']} votes at temperature {cfg['vote_temperature']}"
    )
    if not summary.get("complete", True):
        lines.append("- **incomplete**: the time limit stopped the run; rerun the same command to resume")
    lines += [
        "",
        "| strategy | n | correct | accuracy (95 % CI) | wrong | template | echo | no answer | errors | "
        "fallbacks | over budget | tokens (mean) | × step-by-step | calls (mean) | wall s (mean) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in per.items():
        if not s["n"]:
            continue
        acc = (
            "–"
            if s["accuracy"] is None
            else f"{100 * s['accuracy']:.0f} % ({s['ci95'][0]:.2f}–{s['ci95'][1]:.2f})"
        )
        ratio = "–" if s["tokens_vs_step_by_step"] is None else f"{s['tokens_vs_step_by_step']:.2f}x"
        o = s["outcomes"]
        lines.append(
            f"| {name} | {s['n']} | {s['correct']} | {acc} | {o['wrong']} | {o['template']} | {o['echo']} | "
            f"{o['no_answer']} | {o['error']} | {s['fallback']} | {s['over_budget']} | {s['tokens_mean']:.0f} | "
            f"{ratio} | {s['calls_mean']:.1f} | {s['wall_s_mean']:.1f} |"
        )
    sets = sorted({k for s in per.values() for k in s["by_set"]})
    if sets:
        lines += ["", "| strategy | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
        for name, s in per.items():
            if s["n"]:
                cells = [
                    f"{s['by_set'][k]['correct']}/{s['by_set'][k]['n']}" if k in s["by_set"] else "–"
                    for k in sets
                ]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    judge = summary.get("judge")
    if judge:
        a, b = judge["pair"]
        tally = ", ".join(f"{k}: {v}" for k, v in judge["results"].items())
        lines += [
            "",
            f"Blind pairwise judge, {a} vs {b} on {judge['n']} open questions (both orders): {tally}",
        ]
    return "\n".join(lines) + "\n"


def render_png(summary: dict[str, Any], path: Path) -> bool:
    """Accuracy (with its interval) and mean tokens per strategy; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    per = {k: v for k, v in summary["strategies"].items() if v["n"]}
    if not per:
        return False
    names = list(per)
    acc = [100 * (per[n]["accuracy"] or 0) for n in names]
    low = [a - 100 * per[n]["ci95"][0] for a, n in zip(acc, names, strict=True)]
    high = [100 * per[n]["ci95"][1] - a for a, n in zip(acc, names, strict=True)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = ["#7a7a7a" if n in BASELINES else "#3b6ea5" for n in names]
    left.bar(names, acc, yerr=[low, high], color=colors, capsize=4)
    left.set_ylabel("accuracy, % (95 % CI)")
    left.set_ylim(0, 100)
    right.bar(names, [per[n]["tokens_mean"] for n in names], color=colors)
    right.axhline(summary["config"]["budget"], color="#b03030", linestyle="--", linewidth=1, label="budget")
    right.set_ylabel("tokens per question (mean)")
    right.legend()
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=30)
    title = summary.get("meta", {}).get("model") or "mythos bench"
    fig.suptitle(f"{title}: baselines (grey) vs mythos modes (blue)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    summary["png"] = render_png(summary, out_dir / "summary.png")
    write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    write_atomic(out_dir / "summary.md", render_markdown(summary))


def run_bench_sync(*args, **kwargs) -> BenchOutcome:
    """Blocking wrapper for scripts and the CLI."""
    return asyncio.run(run_bench(*args, **kwargs))
