"""Issue 14 §5 and the engine parts of §4: Retry-After, budgets reserved before a fan-out, --max-cost prices,
exact replay after deadlines, the real cause, non-UTF-8 input, server slots, streaming-only servers —
against the real openai client and the loopback HTTP server wherever a server is involved."""

import asyncio
import json
import os
import subprocess
import sys

import pytest

from mythos.reason import Engine, OpenAIBackend, ReplayBackend
from mythos.reason.calls import Caller, CallPolicy, TokenBudget
from mythos.reason.cli import think_main
from mythos.reason.loopback import LoopbackServer
from mythos.reason.record import RunRecord
from mythos.reason.scripted import Fault

from .helpers import Q_ETHICS, Q_GENERIC, Q_SQLITE, fast_config, run


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as srv:
        yield srv


def http_run(base_url, model, invocation, **config):
    backend = OpenAIBackend(model=model, base_url=base_url)

    async def go():
        try:
            return await Engine(backend, fast_config(**config)).run(invocation)
        finally:
            await backend.aclose()

    return asyncio.run(go()), backend


def test_retry_after_is_honoured(server):
    rec, _ = http_run(server.base_url, "retryafter/0.4/1", Q_GENERIC, mode="direct")
    call = rec.calls[0]
    assert call.status == "ok" and call.retries == 1
    assert call.replies[0]["error"] == "http_429" and call.replies[0]["retry_after"] == 0.4
    assert call.waited_s >= 0.4  # the backoff alone (0.01 s here) would have been far shorter
    prelude = [e for e in server.log if e["model"] == "retryafter/0.4/1" and e["tag"] == "prelude"]
    assert prelude[1]["t_start"] - prelude[0]["t_end"] >= 0.4


def test_retry_after_beyond_the_call_deadline_fails_and_says_so(server):
    rec, _ = http_run(server.base_url, "retryafter/30/5", Q_GENERIC, mode="direct", call_deadline_s=2.0)
    assert rec.outcome == "no_answer"
    assert "retry after 30s" in rec.calls[0].error and rec.calls[0].attempts == 1


def test_agent_mode_never_overshoots_the_token_budget():
    free, _ = run(f"deep {Q_ETHICS}")
    for limit in (
        300,
        free.totals["tokens"] // 2,
        int(free.totals["tokens"] * 0.9),
        free.totals["tokens"] * 2,
    ):
        rec, _ = run(f"deep {Q_ETHICS}", max_tokens=limit)
        assert rec.totals["tokens"] <= limit, (limit, rec.totals["tokens"])
    rec, _ = run(f"deep {Q_ETHICS}", max_tokens=300)
    assert rec.outcome == "no_answer" and "budget" in rec.no_answer_reason


def test_the_fan_out_shrinks_to_what_the_budget_affords():
    free, _ = run(f"deep {Q_ETHICS}")
    rec, _ = run(f"deep {Q_ETHICS}", max_tokens=int(free.totals["tokens"] * 0.9))
    assert rec.totals["tokens"] <= int(free.totals["tokens"] * 0.9)
    assert len(rec.subagents) < len(free.subagents) or any(
        c.tokens_out < f.tokens_out
        for c, f in zip(rec.calls, free.calls, strict=False)
        if c.phase == "subagent"
    )


def test_agent_budget_over_http(server):
    limit = 2500
    rec, _ = http_run(server.base_url, "ok", f"deep {Q_ETHICS}", max_tokens=limit)
    assert 0 < rec.totals["tokens"] <= limit and not rec.totals["estimated_tokens"]


def test_budget_reservation_is_shared_by_concurrent_calls():
    budget = TokenBudget(max_tokens=1000)
    assert budget.out_room(100) == 900
    budget.reserve(100, 500)
    assert budget.out_room(100) == 300  # a second call in flight sees the first one's reservation
    budget.release(100, 500)
    budget.spent_in, budget.spent_out = 100, 200
    assert budget.out_room(100) == 600
    priced = TokenBudget(max_cost=1.0, price_in_per_mtok=1000.0, price_out_per_mtok=2000.0)
    assert priced.out_room(500) == 250  # (1.0 - 0.5) / 2000 per token


def test_max_cost_needs_prices(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MYTHOS_REASON_RECORDS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert think_main(["--provider", "scripted", "--max-cost", "0.01", Q_GENERIC]) == 2
    err = capsys.readouterr().err
    assert "max_cost" in err and "--price-in" in err and "--price-out" in err
    status = think_main(
        [
            "--provider",
            "scripted",
            "--max-cost",
            "0.01",
            "--price-in",
            "3",
            "--price-out",
            "15",
            "--json",
            Q_GENERIC,
        ]
    )
    record = json.loads(capsys.readouterr().out)
    assert status in (0, 3) and record["totals"]["cost"] <= 0.01
    assert record["config"]["price_in_per_mtok"] == 3.0


def _replay(record: RunRecord, **config) -> RunRecord:
    data = json.loads(record.to_json())
    return asyncio.run(Engine(ReplayBackend(data), fast_config(**config)).run(record.invocation_text()))


def test_replay_is_exact_after_a_call_deadline():
    cfg = dict(call_deadline_s=0.4, attempt_timeout_s=5.0)
    original, _ = run(f"trace {Q_GENERIC}", faults={"round:2:*": Fault("hang")}, **cfg)
    assert original.calls[2].error_kind == "timeout" and original.calls[2].replies[-1]["error"] == "deadline"
    again = _replay(original, **cfg)
    assert again.rendered == original.rendered and again.halting == original.halting
    assert [c.status for c in again.calls] == [c.status for c in original.calls]
    assert again.totals["tokens"] == original.totals["tokens"]


def test_replay_is_exact_after_the_run_deadline():
    cfg = dict(run_deadline_s=1.5, call_deadline_s=5.0, attempt_timeout_s=5.0)
    faults = {"sub:C:*": Fault("hang"), "sub:D:*": Fault("hang")}
    original, _ = run(f"deep {Q_ETHICS}", faults=faults, **cfg)
    assert original.halting["reason"] == "run_deadline"
    again = _replay(original, **cfg)
    assert again.halting["reason"] == "run_deadline"
    assert [s.status for s in again.subagents] == [s.status for s in original.subagents]
    assert again.rendered == original.rendered


def test_the_real_cause_is_shown(server):
    rec, _ = http_run(server.base_url, "ctx400", Q_GENERIC, mode="direct")
    assert rec.outcome == "no_answer"
    reason = rec.no_answer_reason
    assert "context window" in reason and "exceeds the available context size" in reason
    assert "--base-url" not in reason
    dead, _ = http_run("http://127.0.0.1:9/v1", "ok", Q_GENERIC, mode="direct", max_retries=0)
    assert "could not be reached" in dead.no_answer_reason and "--base-url" in dead.no_answer_reason


def test_non_utf8_input_is_a_clean_usage_error(tmp_path):
    env = dict(os.environ, MYTHOS_REASON_RECORDS=str(tmp_path), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "mythos", "think", "--provider", "scripted", b"caf\xe9 or tea?"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert b"not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr


def test_concurrency_follows_the_servers_slots():
    with LoopbackServer(latency_s=0.05, slots=1) as srv:
        rec, _ = http_run(srv.base_url, "ok", f"deep {Q_ETHICS}", max_concurrency=5)
        log = [e for e in srv.log if e["tag"].startswith("sub:")]
    assert rec.backend["slots"] == 1 and any("1 slot(s)" in n for n in rec.notes)
    spans = sorted((e["t_start"], e["t_end"]) for e in log)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # never two at once
    assert all(s.status == "ok" for s in rec.subagents)


def test_timed_out_subagents_are_not_reported_as_recovered():
    rec, _ = run(
        f"deep {Q_ETHICS}",
        faults={"sub:A:*": Fault("hang"), "sub:B:*": Fault("hang"), "recovery:*": Fault("hang")},
        call_deadline_s=0.3,
        attempt_timeout_s=5.0,
    )
    assert rec.fallback_row == "recovered"
    assert "not recovered" in rec.footer and "; recovered via" not in rec.footer


def test_streaming_only_servers_work(server):
    rec, backend = http_run(server.base_url, "streamonly", f"trace {Q_GENERIC}")
    assert rec.outcome == "answered" and backend.stream is True
    assert not rec.totals["estimated_tokens"] and rec.totals["tokens_out"] > 0


def test_stream_flag_streams_and_shows_progress(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MYTHOS_REASON_RECORDS", str(tmp_path))
    before = len(server.log)
    assert (
        think_main(["--base-url", server.base_url, "--model", "ok", "--stream", "--mode", "direct", Q_SQLITE])
        == 0
    )
    err = capsys.readouterr().err
    assert "[prelude] ok" in err and "[direct] ok" in err and "final_answer" in err
    assert all(e["stream"] for e in server.log[before:])


def test_single_call_silent_footer_does_not_claim_passes():
    rec, _ = run(Q_SQLITE, silent_strategy="single_call")
    assert "1 call (" in rec.footer and "planned, not observable" in rec.footer
    assert "latent passes" not in rec.footer


def test_deadlines_scale_to_the_measured_speed():
    record = RunRecord(question="q", started_at="", backend={}, config={})
    caller = Caller(None, record, CallPolicy(), TokenBudget(), t0=0.0, deadline_at=1e9)
    assert caller.scaled(60.0, 800) == 60.0  # nothing measured yet
    caller.tokens_per_s = 2.0  # a CPU model: 800 tokens take 400 s
    assert caller.scaled(60.0, 800) == pytest.approx(800.0)
    caller.tokens_per_s = 500.0
    assert caller.scaled(60.0, 800) == 60.0  # never below the configured deadline
