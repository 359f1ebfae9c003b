"""``mythos bench`` end to end: real HTTP servers on 127.0.0.1, real subprocesses, real files.

An *oracle* server (below) knows the answers and replies per strategy by a fixed rule, so the accuracy the
harness reports can be checked exactly; the project's loopback server (canned engine replies) checks that the
engine's modes run through the harness; a delayed loopback model lets a run be killed and resumed.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mythos.reason.bench import (
    DIRECT_SYSTEM,
    JUDGE_SYSTEM,
    STRATEGIES,
    BenchConfig,
    parse_verdict,
    run_bench_sync,
)
from mythos.reason.bench_check import OUTCOMES
from mythos.reason.bench_questions import BenchQuestion
from mythos.reason.loopback import LoopbackServer

pytest.importorskip("openai")

SRC = str(Path(__file__).resolve().parents[2] / "src")


class Oracle(ThreadingHTTPServer):
    """Direct answers are always wrong; step-by-step always right; of every 5 votes on a question, 3 are
    right; the judge prefers the response holding the right answer, or (``biased``) always says 1."""

    def __init__(self, answers: dict[str, str], biased: bool = False):
        super().__init__(("127.0.0.1", 0), OracleHandler)
        self.answers, self.biased = answers, biased
        self.votes: dict[str, int] = {}
        self.lock = threading.Lock()
        self.requests: list[dict] = []

    def reply(self, payload: dict) -> str:
        system = payload["messages"][0]["content"]
        user = payload["messages"][-1]["content"]
        if system == JUDGE_SYSTEM:
            if self.biased:
                return "1"
            first = user.split("Response 2:")[0]
            return "1" if "Answer: right" in first else "2"
        answer = next((a for q, a in self.answers.items() if user.startswith(q)), "?")
        if system == DIRECT_SYSTEM:
            return "Answer: 999999"
        if payload.get("temperature", 0) > 0:
            with self.lock:
                n = self.votes[user] = self.votes.get(user, 0) + 1
            return f"Let me think.\nAnswer: {answer if n % 5 in (1, 3, 0) else 1000 + n}"
        return f"Step one, step two.\nAnswer: {answer}"


class OracleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        return

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(payload)
        text = self.server.reply(payload)
        body = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": payload["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def oracle():
    servers = []

    def start(answers, biased=False):
        server = Oracle(answers, biased)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _bench(*args, env_extra=None, timeout=240):
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "HOME": "/nonexistent-home",
        "OMP_NUM_THREADS": "1",
        **(env_extra or {}),
    }
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "mythos", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_accuracy_and_votes_are_counted_exactly_through_real_http(oracle, tmp_path):
    questions = tmp_path / "q.jsonl"
    items = [
        {"question": "Sam has 3 apples and buys 4. How many?", "answer": 7},
        {"question": "Which city? Facts: Ana lives in Lima.", "answer": "Lima", "choices": ["Lima", "Oslo"]},
    ]
    questions.write_text("".join(json.dumps(i) + "\n" for i in items))
    server, url = oracle({i["question"]: str(i["answer"]) for i in items})
    out = tmp_path / "run"
    proc = _bench(
        "--base-url", url, "--model", "oracle", "--questions", str(questions), "--out", str(out),
        "--strategies", "direct,step-by-step,self-consistency", "--votes", "5", "--budget", "1000",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())["strategies"]
    assert (summary["direct"]["correct"], summary["direct"]["outcomes"]["wrong"]) == (0, 2)
    assert summary["step-by-step"]["correct"] == 2 and summary["step-by-step"]["accuracy"] == 1.0
    sc = summary["self-consistency"]
    assert sc["correct"] == 2 and sc["calls_mean"] == 5 and sc["tokens_mean"] == 300  # 5 calls × 60 tokens
    assert summary["step-by-step"]["tokens_vs_step_by_step"] == 1.0 and sc["tokens_vs_step_by_step"] == 5.0
    rows = {r["key"]: r for r in _rows(out)}
    assert rows["q-0001|self-consistency"]["vote_share"] == 0.6
    # every strategy got the same question text, with the same answer-format line
    users = {
        p["messages"][-1]["content"] for p in server.requests if "apples" in p["messages"][-1]["content"]
    }
    assert len(users) == 1 and users.pop().endswith("Answer: <number>")
    assert "| step-by-step | 2 | 2 | 100 %" in proc.stdout
    assert (out / "summary.md").read_text() == proc.stdout


def test_self_consistency_stops_before_the_budget(oracle, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "1+1?", "answer": 2}) + "\n")
    _, url = oracle({"1+1?": "2"})
    out = tmp_path / "run"
    proc = _bench(
        "--base-url", url, "--model", "o", "--questions", str(questions), "--out", str(out),
        "--strategies", "self-consistency", "--votes", "9", "--budget", "200", "--max-tokens-per-call", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = _rows(out)
    assert row["calls"] == 3 and row["tokens"] == 180 and not row["over_budget"]  # a 4th vote would pass 200


def test_every_strategy_runs_on_the_loopback_server_and_writes_table_json_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    with LoopbackServer() as server:
        proc = _bench(
            "--base-url", server.base_url, "--model", "ok", "--limit", "2", "--per-set", "1", "--out", str(out),
            "--budget", "8000",  # room for a full agent fan-out (the engine reserves it before dispatching)
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = _rows(out)
    assert sorted(r["strategy"] for r in rows) == sorted(STRATEGIES * 2)
    assert {r["set"] for r in rows} == {"arithmetic", "lookup"}
    for row in rows:
        assert row["outcome"] in OUTCOMES and row["calls"] >= 1 and row["tokens"] > 0
    modes = [r for r in rows if r["strategy"] in ("silent", "trace", "agent")]
    assert all(r["final_mode"] == r["strategy"] for r in modes)
    assert {r["strategy"]: r["calls"] for r in modes if r["question_id"].startswith("arith")}["agent"] >= 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["png"] and (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["meta"]["command"].startswith("mythos bench --base-url")
    for name in STRATEGIES:
        assert f"| {name} | 2 |" in proc.stdout


def test_a_killed_run_resumes_without_repeating_or_losing_items(tmp_path):
    out = tmp_path / "run"
    with LoopbackServer() as server:
        args = (
            "--base-url", server.base_url, "--model", "delay/0.4", "--set", "arithmetic", "--per-set", "6",
            "--strategies", "direct,step-by-step", "--out", str(out), "--quiet",
        )  # fmt: skip
        env = {**os.environ, "PYTHONPATH": SRC, "HOME": "/nonexistent-home"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "mythos", "bench", *args], env=env, stderr=subprocess.PIPE
        )
        results = out / "results.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if results.exists() and len(results.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
        before = {r["key"]: r for r in _rows(out)}
        assert 3 <= len(before) < 12
        with open(results, "a") as handle:  # a write torn by the kill
            handle.write('{"key": "arith-0-005|direct", "outc')
        again = _bench(*args)
    assert again.returncode == 0, again.stderr
    rows = _rows(out)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 12
    assert all(r == before[r["key"]] for r in rows if r["key"] in before)
    assert f"{12 - len(before)} items run, {len(before)} resumed" in again.stderr


def test_resume_with_other_settings_is_refused_and_bad_input_exits_2(tmp_path, oracle):
    _, url = oracle({})
    out = tmp_path / "run"
    first = _bench(
        "--base-url", url, "--model", "o", "--limit", "1", "--strategies", "direct", "--out", str(out)
    )
    assert first.returncode == 0, first.stderr
    other = _bench(
        "--base-url", url, "--model", "o", "--limit", "1", "--strategies", "direct", "--out", str(out),
        "--budget", "999",
    )  # fmt: skip
    assert other.returncode == 2 and "budget=2000" in other.stderr and "Traceback" not in other.stderr
    schema = _bench(
        "--base-url", url, "--model", "o", "--limit", "1", "--strategies", "direct", "--out", str(out),
        "--json-mode", "schema",
    )  # fmt: skip
    assert schema.returncode == 2 and "json_mode='off'" in schema.stderr
    for args, message in [
        (("--strategies", "direct,cot"), "--strategies"),
        (("--set", "poetry"), "unknown set"),
        (("--judge", "silent,direct"), "--judge"),
        (("--strategies", "direct,silent", "--judge", "silent,direct"), "open questions"),
        (("--budget", "8"), "--budget"),
        (("--questions", str(tmp_path / "none.jsonl")), "cannot read"),
    ]:
        proc = _bench("--base-url", url, "--model", "o", "--out", str(tmp_path / "x"), *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
    unconfigured = _bench("--out", str(tmp_path / "y"))
    assert unconfigured.returncode == 2 and "Traceback" not in unconfigured.stderr


def test_an_unreachable_backend_fails_the_job_with_status_1(tmp_path):
    proc = _bench(
        "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--limit", "1", "--strategies", "direct",
        "--out", str(tmp_path / "run"), "--call-deadline", "5",
    )  # fmt: skip
    assert proc.returncode == 1 and "every item failed" in proc.stderr
    (row,) = _rows(tmp_path / "run")
    assert row["outcome"] == "error" and row["error"].startswith("connection")


def test_blind_judge_counts_only_verdicts_that_survive_the_position_swap(oracle, tmp_path):
    open_q = BenchQuestion("open-1", "SQLite or PostgreSQL?", "", "open", "open")
    cfg = BenchConfig(strategies=("direct", "step-by-step"), judge=("step-by-step", "direct"), budget=500)
    from mythos.reason.backends import OpenAIBackend

    for biased, expected in ((False, "step-by-step"), (True, "inconsistent")):
        server, url = oracle({"SQLite": "right"}, biased=biased)
        backend = OpenAIBackend(model="o", base_url=url)
        outcome = run_bench_sync([open_q], backend, cfg, tmp_path / f"judge-{biased}")
        judged = [r for r in _rows(tmp_path / f"judge-{biased}") if r["kind"] == "judge"]
        assert [r["result"] for r in judged] == [expected]
        prompts = [
            p["messages"][-1]["content"]
            for p in server.requests
            if p["messages"][0]["content"] == JUDGE_SYSTEM
        ]
        assert len(prompts) == 2 and "step-by-step" not in prompts[0] and "direct" not in prompts[0]
        assert outcome.summary["judge"]["results"] == {expected: 1}
        assert outcome.summary["strategies"]["direct"]["accuracy"] is None  # open questions are not scored


def test_parse_verdict():
    assert (
        parse_verdict("2.") == "2"
        and parse_verdict(" Tie") == "tie"
        and parse_verdict("Response one") == "invalid"
    )


def test_time_limit_stops_starting_items_and_the_run_stays_resumable(oracle, tmp_path):
    _, url = oracle({})
    out = tmp_path / "run"
    proc = _bench(
        "--base-url", url, "--model", "o", "--per-set", "3", "--strategies", "direct", "--out", str(out),
        "--time-limit", "0.000001",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "rerun to resume" in proc.stderr and "**incomplete**" in proc.stdout
    assert len(_rows(out)) == 1  # the first item starts before the clock is checked again


def test_summaries_recheck_stored_replies_with_the_current_checker(oracle, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "2+2?", "answer": 4}) + "\n")
    _, url = oracle({"2+2?": "4"})
    out = tmp_path / "run"
    args = ("--base-url", url, "--model", "o", "--questions", str(questions), "--out", str(out))
    assert _bench(*args, "--strategies", "step-by-step").returncode == 0
    (row,) = _rows(out)
    assert row["outcome"] == "correct"
    stale = {**row, "outcome": "echo"}  # as an older checker might have written it
    (out / "results.jsonl").write_text(json.dumps(stale) + "\n")
    again = _bench(*args, "--strategies", "step-by-step")
    assert again.returncode == 0 and "0 items run, 1 resumed" in again.stderr
    assert json.loads((out / "summary.json").read_text())["strategies"]["step-by-step"]["correct"] == 1


def test_json_prints_one_envelope_on_success_and_on_failure(oracle, tmp_path):
    _, url = oracle({})
    ok = _bench(
        "--base-url",
        url,
        "--model",
        "o",
        "--limit",
        "1",
        "--strategies",
        "direct",
        "--out",
        str(tmp_path / "a"),
        "--json",
    )
    data = json.loads(ok.stdout)
    assert ok.returncode == 0 and data["ok"] is True and data["strategies"]["direct"]["n"] == 1
    bad = _bench("--base-url", url, "--model", "o", "--budget", "8", "--out", str(tmp_path / "b"), "--json")
    data = json.loads(bad.stdout)
    assert bad.returncode == 2 and data["ok"] is False and "--budget" in data["error"]
    down = _bench(
        "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--limit", "1", "--strategies", "direct",
        "--out", str(tmp_path / "c"), "--call-deadline", "5", "--json",
    )  # fmt: skip
    assert down.returncode == 1 and json.loads(down.stdout)["ok"] is False
