"""`mythos serve` over real HTTP on 127.0.0.1, driven by the real `openai` client and raw httpx."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
import torch

from mythos.infer.engine import Engine
from mythos.infer.scheduler import Scheduler
from mythos.infer.server import ServeState, render_chat, serve_in_thread
from mythos.infer.tokenizer import ByteTokenizer
from mythos.model import Mythos, get_preset


@pytest.fixture(scope="module")
def model() -> Mythos:
    torch.manual_seed(0)
    return Mythos(get_preset("tiny", max_seq_len=4096)).eval()  # vocab 256: byte tokenizer


def start(model: Mythos, slots: int = 4, max_len: int = 256):
    engine = Engine.from_model(model, slots=slots, max_len=max_len)
    scheduler = Scheduler(engine).start()
    server, _ = serve_in_thread(ServeState(scheduler, ByteTokenizer(), "tiny-test", default_max_tokens=8))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    return server, scheduler, base


@pytest.fixture(scope="module")
def served(model):
    server, scheduler, base = start(model)
    yield base, scheduler
    server.shutdown()
    server.server_close()
    scheduler.stop()


@pytest.fixture
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


def greedy_reference(model: Mythos, text: str, n: int, n_loops: int | None = None) -> str:
    """Greedy continuation by the model's own full forward (no cache), decoded as bytes."""
    ids = list(text.encode())
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids + out]), n_loops=n_loops)
            out.append(int(logits[0, -1].argmax()))
    return ByteTokenizer().decode(out)


def test_models_endpoint(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny-test"]


def test_greedy_completion_matches_the_model(client: openai.OpenAI, model: Mythos) -> None:
    res = client.completions.create(model="tiny-test", prompt="The cat", max_tokens=6, temperature=0)
    assert res.choices[0].finish_reason == "length"
    assert res.usage.prompt_tokens == 7 and res.usage.completion_tokens == 6
    assert res.choices[0].text == greedy_reference(model, "The cat", 6)


def test_per_request_loop_count(client: openai.OpenAI, model: Mythos) -> None:
    res = client.completions.create(
        model="tiny-test", prompt="abc", max_tokens=5, temperature=0, extra_body={"n_loops": 1}
    )
    assert res.choices[0].text == greedy_reference(model, "abc", 5, n_loops=1)


def test_seeded_sampling_is_reproducible(client: openai.OpenAI) -> None:
    kw = dict(
        model="tiny-test",
        prompt="xyz",
        max_tokens=8,
        temperature=1.0,
        top_p=0.9,
        seed=7,
        extra_body={"top_k": 50},
    )
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text


def test_streaming_completion_equals_blocking(client: openai.OpenAI) -> None:
    blocking = client.completions.create(model="tiny-test", prompt="Hello", max_tokens=10, temperature=0)
    chunks = list(
        client.completions.create(
            model="tiny-test", prompt="Hello", max_tokens=10, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks) == blocking.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_completion_and_stream(client: openai.OpenAI, model: Mythos) -> None:
    messages = [{"role": "user", "content": "hi"}]
    res = client.chat.completions.create(model="tiny-test", messages=messages, max_tokens=5, temperature=0)
    assert res.choices[0].message.role == "assistant"
    assert res.choices[0].message.content == greedy_reference(model, render_chat(messages), 5)
    stream = client.chat.completions.create(
        model="tiny-test", messages=messages, max_tokens=5, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == res.choices[0].message.content


def test_text_parts_and_streamed_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(
        model="tiny-test", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
    )
    parts = client.chat.completions.create(
        model="tiny-test",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}]}
        ],
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(parts)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == plain.choices[0].message.content
    )
    assert (
        chunks[-1].usage.completion_tokens == 4
        and chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    )


def test_concurrent_requests_batch_without_changing_results(client: openai.OpenAI, served) -> None:
    prompts = [("alpha", 1), ("beta beta", 3), ("gamma", 2), ("d", 3), ("epsilon!", 1), ("zeta", 2)]
    alone = {
        p: client.completions.create(
            model="tiny-test", prompt=p, max_tokens=20, temperature=0, extra_body={"n_loops": n}
        )
        .choices[0]
        .text
        for p, n in prompts
    }
    results: dict[str, str] = {}
    steps_before = served[1].steps

    def ask(p: str, n: int) -> None:
        results[p] = (
            client.completions.create(
                model="tiny-test", prompt=p, max_tokens=20, temperature=0, extra_body={"n_loops": n}
            )
            .choices[0]
            .text
        )

    threads = [threading.Thread(target=ask, args=pn) for pn in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == alone
    # 6 requests x 19 decode steps each: batching must have shared steps between them
    assert served[1].steps - steps_before < 6 * 19


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/completions", b"{not json", 400, None),
        ("/v1/completions", json.dumps({"max_tokens": 3}).encode(), 400, "prompt"),
        ("/v1/completions", json.dumps({"prompt": "a", "temperature": -1}).encode(), 400, "temperature"),
        ("/v1/completions", json.dumps({"prompt": "a", "max_tokens": 0}).encode(), 400, "max_tokens"),
        ("/v1/completions", json.dumps({"prompt": "a", "n_loops": 99}).encode(), 400, "n_loops"),
        ("/v1/completions", json.dumps({"prompt": "a", "model": "gpt-9"}).encode(), 404, "model"),
        ("/v1/completions", json.dumps({"prompt": "a" * 300}).encode(), 400, "prompt"),
        ("/v1/chat/completions", json.dumps({"messages": [{"role": "user"}]}).encode(), 400, "messages"),
        ("/v1/nothing", b"{}", 404, None),
    ],
)
def test_bad_requests_get_openai_shaped_4xx(served, path: str, body: bytes, status: int, param) -> None:
    res = httpx.post(served[0] + path, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert res.status_code == status
    err = res.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and err["param"] == param


def test_openai_client_sees_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="top_p"):
        client.completions.create(model="tiny-test", prompt="a", top_p=2.0)


def _health(base: str) -> dict:
    return httpx.get(base + "/health", timeout=10).json()


def _wait_idle(base: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = _health(base)
        if h["active"] == 0 and h["waiting"] == 0:
            return h
        time.sleep(0.05)
    return _health(base)


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_frees_the_slot(model: Mythos, stream: bool) -> None:
    server, scheduler, base = start(model, slots=1, max_len=4000)
    try:
        body = json.dumps({"prompt": "go", "max_tokens": 3900, "temperature": 0, "stream": stream}).encode()
        host, port = server.server_address[:2]
        sock = socket.create_connection((host, port))
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 20
        while scheduler.tokens_out < 3 and time.monotonic() < deadline:  # generation is under way
            time.sleep(0.01)
        assert _health(base)["active"] == 1
        sock.close()
        health = _wait_idle(base)
        assert health["active"] == 0
        assert health["tokens_out"] < 3900  # it stopped early, not by running to the end
        # the single slot serves the next request
        res = httpx.post(base + "/v1/completions", json={"prompt": "hi", "max_tokens": 3}, timeout=30)
        assert res.status_code == 200 and res.json()["usage"]["completion_tokens"] == 3
    finally:
        server.shutdown()
        server.server_close()
        scheduler.stop()


def test_serve_cli_subprocess(tmp_path) -> None:
    """`mythos serve PRESET --port 0` in its own process answers the openai client."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mythos", "serve", "tiny", "--port", "0", "--slots", "2", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        base = line.split("on ")[1].split(" ")[0]
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
        res = client.completions.create(model="tiny", prompt="ab", max_tokens=4, temperature=0)
        assert res.usage.completion_tokens == 4
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
def test_compiled_server_matches_eager(model: Mythos) -> None:
    """`serve --compile`: padded power-of-two decode batches give the same greedy text as eager."""
    engine = Engine.from_model(model, slots=4, max_len=64)
    engine.compile()
    scheduler = Scheduler(engine).start()
    server, _ = serve_in_thread(ServeState(scheduler, ByteTokenizer(), "tiny-test"))
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
        prompts = ["one", "two two", "three"]
        results: dict[str, str] = {}

        def ask(p: str) -> None:
            results[p] = (
                client.completions.create(model="tiny-test", prompt=p, max_tokens=6, temperature=0)
                .choices[0]
                .text
            )

        threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert results == {p: greedy_reference(model, p, 6) for p in prompts}
    finally:
        server.shutdown()
        server.server_close()
        scheduler.stop()
