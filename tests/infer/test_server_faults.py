"""`mythos serve` under bad input, load and faults: real uvicorn servers on 127.0.0.1, real clients and sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch

from mythos.infer.engine import Engine
from mythos.infer.scheduler import Scheduler
from mythos.infer.server import ServeState, serve_in_thread
from mythos.infer.tokenizer import ByteTokenizer
from mythos.model import Mythos, get_preset


@pytest.fixture(scope="module")
def model() -> Mythos:
    torch.manual_seed(0)
    return Mythos(get_preset("tiny", max_seq_len=1024)).eval()


class Served:
    """A server on a background thread with its own scheduler; a context manager that drains it."""

    def __init__(self, model: Mythos, slots: int = 4, max_len: int = 256, max_queue: int = 64, **state_kw):
        engine = Engine.from_model(model, slots=slots, max_len=max_len)
        self.scheduler = Scheduler(engine, max_waiting=max_queue).start()
        state = ServeState(
            self.scheduler,
            ByteTokenizer(),
            "tiny-test",
            default_max_tokens=8,
            max_queue=max_queue,
            **state_kw,
        )
        self.state = state
        self.server, _ = serve_in_thread(state)
        self.host, self.port = self.server.server_address
        self.base = f"http://{self.host}:{self.port}"

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.scheduler.stop()

    def raw(self, data: bytes, wait: float = 10.0, then: bytes = b"") -> bytes:
        """Send bytes on a fresh socket, read until the server closes it (or ``wait`` passes)."""
        with socket.create_connection((self.host, self.port)) as sock:
            sock.settimeout(wait)
            sock.sendall(data)
            out = b""
            try:
                while chunk := sock.recv(65536):
                    out += chunk
                    if then:
                        sock.sendall(then)
                        then = b""
            except (TimeoutError, ConnectionResetError):
                pass
            return out


@pytest.fixture(scope="module")
def served(model):
    with Served(model) as s:
        yield s


def assert_openai_error(res: httpx.Response, status: int, param: str | None = None) -> dict:
    assert res.status_code == status, res.text
    err = res.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and err["param"] == param
    return err


DEEP = b"[" * 100_000 + b"]" * 100_000
MALFORMED = [
    (b'{"prompt": "a", "seed": 18446744073709551616}', "seed"),  # 2^64
    (b'{"prompt": "a", "seed": -1}', "seed"),
    (b'{"prompt": "a", "top_k": 9223372036854775808}', "top_k"),  # 2^63
    (b'{"prompt": "a", "top_k": 0}', "top_k"),
    (b'{"prompt": "a", "max_tokens": 9223372036854775808}', "max_tokens"),
    (b'{"prompt": "a", "max_tokens": "5"}', "max_tokens"),
    (b'{"prompt": "a", "temperature": true}', "temperature"),
    (b'{"prompt": "a", "temperature": NaN}', None),
    (b'{"prompt": "a", "top_p": 1e400}', "top_p"),
    (b'{"prompt": "a", "stream": "yes"}', "stream"),
    (b'{"prompt": "a", "stream": true, "stream_options": {"include_usage": 1}}', "include_usage"),
    (b'{"prompt": "a", "stop": 5}', "stop"),
    (b'{"prompt": "a", "stop": "\\udfff"}', "stop"),
    (b'{"prompt": "a", "n": 2}', "n"),
    (b'{"prompt": "a", "n_loops": 0}', "n_loops"),
    (b'{"prompt": "a", "model": 7}', "model"),
    (b'{"prompt": "a", "exit": "bogus:1"}', "exit"),
    (b'{"prompt": "a", "exit": 0.01}', "exit"),
    (b'{"prompt": "\\ud800"}', "prompt"),  # a lone surrogate
    (b'{"prompt": "ok \\udc00 then"}', "prompt"),
    (b'{"prompt": 5}', "prompt"),
    (b'{"prompt": ["a", "b"]}', "prompt"),
    (b'{"prompt": ""}', "prompt"),
    (DEEP, None),  # 100,000-deep JSON
    (b'{"prompt": "a", "x": ' + DEEP + b"}", None),
    (b"\xff\xfe\xfa", None),  # not UTF-8
    (b"[1, 2]", None),
    (b"", None),
]


@pytest.mark.parametrize(("body", "param"), MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
def test_malformed_completion_is_a_400_naming_the_field(served: Served, body: bytes, param) -> None:
    res = httpx.post(served.base + "/v1/completions", content=body, timeout=30)
    assert_openai_error(res, 400, param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages"),
        ({"messages": [{"role": 1, "content": "x"}]}, "messages"),
    ],
)
def test_malformed_chat_is_a_400(served: Served, body: dict, param: str) -> None:
    res = httpx.post(served.base + "/v1/chat/completions", json=body, timeout=30)
    assert_openai_error(res, 400, param)
    surrogate = b'{"messages": [{"role": "user", "content": "\\ud83d"}]}'
    res = httpx.post(served.base + "/v1/chat/completions", content=surrogate, timeout=30)
    assert_openai_error(res, 400, "messages")


def test_valid_exit_field_is_accepted_and_usage_reports_loops(served: Served) -> None:
    res = httpx.post(served.base + "/v1/completions", json={"prompt": "ab", "max_tokens": 3}, timeout=30)
    usage = res.json()["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["loops_per_token"] == served.scheduler.engine.max_loops  # fixed depth: every token ran it
    res = httpx.post(
        served.base + "/v1/completions", json={"prompt": "ab", "max_tokens": 3, "exit": "kl:0.01"}, timeout=30
    )
    assert res.status_code == 200 and res.json()["usage"]["completion_tokens"] == 3


def test_other_methods_and_paths_get_json_405_and_404(served: Served) -> None:
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
        res = httpx.request(method, served.base + "/v1/completions", timeout=10)
        err = assert_openai_error(res, 405)
        assert res.headers["allow"] == "POST" and method in err["message"]
    err = assert_openai_error(httpx.get(served.base + "/v1/nothing", timeout=10), 404)
    assert "/v1/nothing" in err["message"]
    assert_openai_error(httpx.get(served.base + "/v1/completions", timeout=10), 405)


def test_oversized_bodies_get_413_before_being_read(served: Served) -> None:
    # a declared 64 MB body: answered from the headers alone (nothing of the body is sent)
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    out = served.raw(head + b"Content-Length: 67108864\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413") and b'"invalid_request_error"' in out
    # chunked, no length: refused once the limit is crossed, without reading the rest
    chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
    out = served.raw(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 5)
    assert out.startswith(b"HTTP/1.1 413")
    # Content-Length: -1 is not HTTP: a 400 in OpenAI's shape, the 1 MB behind it unread
    out = served.raw(head + b"Content-Length: -1\r\n\r\n" + b"a" * 1_000_000)
    assert out.startswith(b"HTTP/1.1 400")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "bad_http"
    # the server is fine afterwards
    assert (
        httpx.post(served.base + "/v1/completions", json={"prompt": "a", "max_tokens": 2}).status_code == 200
    )


def test_keep_alive_serves_several_requests_on_one_connection(served: Served) -> None:
    body = json.dumps({"prompt": "hi", "max_tokens": 2, "temperature": 0}).encode()
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with socket.create_connection((served.host, served.port)) as sock:
        sock.settimeout(30)
        for _ in range(3):
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            length = int(
                next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
            )
            payload = b""
            while len(payload) < length:
                payload += sock.recv(length - len(payload))
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
            assert json.loads(payload)["usage"]["completion_tokens"] == 2


def test_slow_clients_are_cut_off_with_408(model: Mythos) -> None:
    with Served(model, read_timeout=0.5) as s:
        out = s.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le", wait=10)  # headers stall
        assert out.startswith(b"HTTP/1.1 408")
        out = s.raw(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", wait=10
        )  # body stalls
        assert out.startswith(b"HTTP/1.1 408")
        assert s.raw(b"", wait=10).startswith(b"HTTP/1.1 408")  # connected, never spoke
        metrics = httpx.get(s.base + "/metrics").text
        assert 'mythos_errors_total{kind="timeout"} 3' in metrics


def test_poison_requests_fail_alone_while_streams_run(model: Mythos) -> None:
    """Requests the old server passed to the batch (seed 2^64, top_k 2^63) fail alone; streams are intact."""
    with Served(model, slots=4, max_len=256) as s:
        prompts = ["alpha", "beta", "gamma"]

        def blocking(p: str) -> str:
            body = {"prompt": p, "max_tokens": 60, "temperature": 0}
            return httpx.post(s.base + "/v1/completions", json=body, timeout=120).json()["choices"][0]["text"]

        alone = {p: blocking(p) for p in prompts}
        streamed: dict[str, tuple[str, str | None, bool]] = {}
        started = threading.Barrier(len(prompts) + 1)

        def stream(p: str) -> None:
            body = {"prompt": p, "max_tokens": 60, "temperature": 0, "stream": True}
            text, finish, done = "", None, False
            with httpx.stream("POST", s.base + "/v1/completions", json=body, timeout=120) as res:
                first = True
                for line in res.iter_lines():
                    if first:
                        started.wait(30)
                        first = False
                    if line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: "):
                        chunk = json.loads(line[6:])
                        assert "error" not in chunk, chunk
                        text += chunk["choices"][0]["text"]
                        finish = chunk["choices"][0]["finish_reason"] or finish
            streamed[p] = (text, finish, done)

        threads = [threading.Thread(target=stream, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        started.wait(30)
        poison = [
            b'{"prompt": "x", "seed": 18446744073709551616, "temperature": 1}',
            b'{"prompt": "x", "top_k": 9223372036854775808, "temperature": 1}',
            b'{"prompt": "\\ud800"}',
            DEEP,
        ]
        statuses = [httpx.post(s.base + "/v1/completions", content=b, timeout=30).status_code for b in poison]
        for t in threads:
            t.join(120)
        assert statuses == [400] * len(poison)
        assert streamed == {p: (alone[p], "length", True) for p in prompts}


def test_full_queue_answers_429_with_retry_after_never_a_reset(model: Mythos) -> None:
    with Served(model, slots=1, max_len=256, max_queue=1) as s:
        results: list[tuple[int, str | None]] = []
        errors: list[BaseException] = []

        def ask() -> None:
            try:
                res = httpx.post(
                    s.base + "/v1/completions", json={"prompt": "go", "max_tokens": 40}, timeout=120
                )
                results.append((res.status_code, res.headers.get("retry-after")))
            except BaseException as exc:  # a reset or a timeout would land here
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        assert len(results) == 8
        assert {status for status, _ in results} == {200, 429}
        assert all(retry == "1" for status, retry in results if status == 429)
        assert sum(status == 200 for status, _ in results) >= 2  # the slot and the queue place were used
        metrics = httpx.get(s.base + "/metrics").text
        n429 = sum(status == 429 for status, _ in results)
        assert f'mythos_errors_total{{kind="queue_full"}} {n429}' in metrics


def test_api_key_is_required_and_compared(model: Mythos) -> None:
    with Served(model, api_key="s3cret") as s:
        body = {"prompt": "a", "max_tokens": 2}
        res = httpx.post(s.base + "/v1/completions", json=body)
        assert_openai_error(res, 401)
        assert res.headers["www-authenticate"] == "Bearer"
        bad = httpx.post(s.base + "/v1/completions", json=body, headers={"Authorization": "Bearer s3cre"})
        assert_openai_error(bad, 401)
        assert_openai_error(httpx.get(s.base + "/metrics"), 401)
        ok = httpx.post(s.base + "/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
        assert httpx.get(s.base + "/health").status_code == 200  # probes need no key


def test_metrics_count_requests_errors_and_tokens(model: Mythos) -> None:
    with Served(model) as s:
        for _ in range(3):
            httpx.post(s.base + "/v1/completions", json={"prompt": "ab", "max_tokens": 4}, timeout=30)
        httpx.post(s.base + "/v1/completions", json={"prompt": "ab", "seed": 2**64}, timeout=30)
        time.sleep(1.2)  # one tokens/s sample interval
        text = httpx.get(s.base + "/metrics").text
        values = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if not line.startswith("#")
        }
        assert values['mythos_requests_total{route="/v1/completions",status="200"}'] == 3
        assert values['mythos_errors_total{kind="bad_request"}'] == 1
        assert values["mythos_completion_tokens_total"] == 12
        assert values["mythos_loops_per_token"] == s.scheduler.engine.max_loops
        assert values["mythos_queue_depth"] == 0 and values["mythos_active_slots"] == 0
        assert values["mythos_slots"] == 4
        assert "mythos_tokens_per_second" in values


def test_openapi_document_lists_the_routes(served: Served) -> None:
    doc = httpx.get(served.base + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/completions", "/v1/chat/completions", "/v1/models", "/metrics"} <= set(doc["paths"])


def _serve(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "mythos", "serve", "tiny", "--threads", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigterm_drains_in_flight_streams_then_exits_0() -> None:
    proc = _serve("--port", "0", "--slots", "2", "--max-len", "4096")
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        base = line.split("on ")[1].split(" ")[0].removesuffix("/v1")
        port = int(base.rsplit(":", 1)[1])
        body = {
            "prompt": "go",
            "max_tokens": 3000,  # long enough to outlive the listener's close, even on an idle machine
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        refused: list[bool] = []

        def terminate_mid_stream() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and httpx.get(base + "/health").json()["tokens_out"] < 5:
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # no new connections while draining
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()
                except ConnectionRefusedError:
                    refused.append(not done)  # refused while our stream was still running
                    return
                time.sleep(0.02)
            refused.append(False)

        killer = threading.Thread(target=terminate_mid_stream)
        usage, finish, done = None, None, False
        with httpx.stream("POST", base + "/v1/completions", json=body, timeout=120) as res:
            killer.start()
            for line in res.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    usage = chunk.get("usage") or usage
                    if chunk["choices"]:
                        finish = chunk["choices"][0]["finish_reason"] or finish
                done = done or line == "data: [DONE]"
        killer.join(60)
        assert refused == [True]
        assert done and finish == "length" and usage["completion_tokens"] == 3000  # the stream ran to its end
        assert proc.wait(60) == 0
        assert "drained" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "99999"], "--port=99999"),
        (["--n-loops", "0"], "--n-loops=0"),
        (["--max-queue", "-1"], "--max-queue=-1"),
    ],
)
def test_bad_flags_exit_2_with_a_message(args: list[str], needle: str) -> None:
    proc = _serve(*args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and needle in err and "Traceback" not in err


def test_port_in_use_is_a_clean_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        proc = _serve("--port", str(taken.getsockname()[1]))
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "cannot listen" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("api_key", [None, "k3y"])
def test_openapi_contract_with_schemathesis(model: Mythos, tmp_path, api_key: str | None) -> None:
    """schemathesis drives every route with generated valid and invalid requests against the document.

    All its checks run (no 5xx, documented status codes, content types and bodies, invalid data refused,
    auth enforced) except ``positive_data_acceptance``: a schema cannot say how many tokens a prompt is, so
    a schema-valid prompt longer than the context is rightly refused with a 400.
    """
    st = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    if not os.path.exists(st):
        pytest.skip("schemathesis is not installed: pip install 'mythos[dev]'")
    with Served(model, slots=4, max_len=512, api_key=api_key) as s:
        auth = ["-H", f"Authorization: Bearer {api_key}"] if api_key else []
        proc = subprocess.run(
            [
                st,
                "run",
                s.base + "/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ]
            + ["--max-examples", "30", "--seed", "1", *auth],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        assert " generated" in proc.stdout


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_end_the_answer_blocking_and_streamed(served: Served, stream: bool) -> None:
    """Stop strings are matched as tokens arrive (streams and stop requests wake per ~10 ms, not per token)."""
    stop = None
    for seed in range(
        8
    ):  # seeded sampling: the random model's greedy text can be one undecodable byte repeated
        body = {"prompt": "stop here", "max_tokens": 24, "temperature": 1.0, "seed": seed}
        full = httpx.post(served.base + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
        stop = next((c for c in full[1:] if c != "\ufffd"), None)
        if stop is not None:
            break
    assert stop is not None, "no seed gave the random model a decodable character to stop on"
    expected = full[: full.index(stop)]
    if not stream:
        res = httpx.post(served.base + "/v1/completions", json={**body, "stop": stop}, timeout=60).json()
        assert res["choices"][0]["text"] == expected and res["choices"][0]["finish_reason"] == "stop"
        return
    text, finish = "", None
    with httpx.stream(
        "POST", served.base + "/v1/completions", json={**body, "stop": stop, "stream": True}, timeout=60
    ) as res:
        for line in res.iter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"][0]
                text += choice["text"]
                finish = choice["finish_reason"] or finish
    assert text == expected and finish == "stop"
