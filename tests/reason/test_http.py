"""The HTTP path: the real openai / anthropic clients against a real server on 127.0.0.1 with fault modes."""

import asyncio

import pytest

from mythos.reason import AnthropicBackend, Engine, OpenAIBackend
from mythos.reason.backends import BackendError
from mythos.reason.loopback import LoopbackServer

from .helpers import Q_ETHICS, Q_GENERIC, fast_config


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as srv:
        yield srv


def think(server, model, invocation=f"trace {Q_GENERIC}", **config):
    backend = OpenAIBackend(model=model, base_url=server.base_url)

    async def go():
        try:
            return await Engine(backend, fast_config(**config)).run(invocation)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def one_call(server, model, timeout=1.0):
    backend = OpenAIBackend(model=model, base_url=server.base_url)

    async def go():
        try:
            return await backend.complete(
                [{"role": "user", "content": "hi"}], max_tokens=10, temperature=0, timeout=timeout, tag="coda"
            )
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "model, kind",
    [("http500", "http_5xx"), ("http429", "http_429"), ("garbage", "garbage"), ("hang", "timeout")],
)
def test_backend_classifies_each_failure(server, model, kind):
    with pytest.raises(BackendError) as info:
        one_call(server, model, timeout=0.5)
    assert info.value.kind == kind


def test_backend_reads_usage_and_empty_content(server):
    done = one_call(server, "ok")
    assert done.tokens_in == 1 and done.tokens_out > 0 and not done.estimated
    assert one_call(server, "empty").text == ""


def test_full_trace_run_over_http(server):
    rec = think(server, "ok")
    assert rec.halting["reason"] == "self_consistent" and len(rec.rounds) == 4
    assert rec.backend == {"name": "openai", "model": "ok"}
    assert all(c.status == "ok" and c.tokens_in > 0 for c in rec.calls)
    assert "*Depth: 4 rounds, converged at round 4. Mode: trace.*" in rec.rendered


def test_prose_replies_become_the_answer_with_a_note(server):
    rec = think(server, "prose")
    assert rec.halting["reason"] == "round_failed" and not rec.coda.get("fallback")
    assert rec.coda["final_answer"].startswith("I think this is a really interesting question")
    assert any("ignored the JSON format" in f for f in rec.fallbacks) and "*Fallbacks:" in rec.rendered


@pytest.mark.parametrize("model", ["empty", "garbage", "http500", "http429"])
def test_every_call_failing_ends_cleanly_with_a_footer(server, model):
    rec = think(server, model)
    assert rec.coda["fallback"] and "*Fallbacks:" in rec.rendered
    assert all(c.attempts <= 3 for c in rec.calls)  # bounded: 1 + 2 retries, or 1 + 1 repair
    failed = [c for c in rec.calls if c.status == "failed"]
    assert failed and all(c.error_kind for c in failed)


def test_flaky_server_recovers_through_retries(server):
    rec = think(server, "flaky/2")
    assert rec.coda.get("fallback") is None and len(rec.rounds) == 4
    assert all(c.retries == 2 and c.status == "ok" for c in rec.calls)


def test_hanging_server_hits_the_call_deadline(server):
    rec = think(server, "hang", call_deadline_s=0.6, attempt_timeout_s=0.3, max_retries=1)
    assert rec.calls[0].status == "failed" and rec.calls[0].error_kind == "timeout"
    assert rec.coda["final_answer"] and rec.footer


def test_slow_replies_within_the_deadline_succeed(server):
    rec = think(server, "delay/0.05")
    assert len(rec.rounds) == 4 and not rec.fallbacks


def test_agent_fan_out_runs_its_subagents_at_once(server):
    """The server answers a subagent only once all five are in flight together: sequential calls would get 504s
    (no timing in the check: the server's barrier is the proof)."""
    rec = think(server, "gather/5/sub:", invocation=f"deep {Q_ETHICS}")
    subs = [c for c in rec.calls if c.phase == "subagent"]
    assert len(subs) == 5 and all(c.status == "ok" for c in subs), [(c.tag, c.error) for c in subs]
    hits = [e for e in server.log if e["model"] == "gather/5/sub:" and e["tag"].startswith("sub:")]
    assert len(hits) == 5 and all(e["status"] == 200 for e in hits)


def test_server_slots_serialize_requests():
    with LoopbackServer(latency_s=0.05, slots=1) as srv:
        rec = think(srv, "ok", invocation=f"deep {Q_ETHICS}")
        hits = sorted((e for e in srv.log if e["tag"].startswith("sub:")), key=lambda e: e["t_start"])
    assert len(hits) == 5 and all(a["t_end"] <= b["t_start"] for a, b in zip(hits, hits[1:], strict=False))
    assert rec.fallback_row == "none"


def test_faulty_server_never_raises(server):
    for seed in range(3):
        rec = think(server, f"faulty/0.5/{seed}", invocation=f"deep {Q_ETHICS}")
        assert rec.coda["final_answer"] and rec.footer.startswith("*Depth:")


def test_anthropic_client_over_http(server):
    backend = AnthropicBackend(model="ok", api_key="test", base_url=server.anthropic_url)

    async def go():
        try:
            return await Engine(backend, fast_config()).run(f"trace {Q_GENERIC}")
        finally:
            await backend.aclose()

    rec = asyncio.run(go())
    assert len(rec.rounds) == 4 and rec.backend["name"] == "anthropic"
    assert all(c.status == "ok" and c.tokens_out > 0 for c in rec.calls)


@pytest.mark.parametrize("json_mode, expected", [("object", "json_object"), ("schema", "json_schema")])
def test_json_mode_reaches_the_server(json_mode, expected):
    with LoopbackServer() as srv:
        backend = OpenAIBackend(model="ok", base_url=srv.base_url, json_mode=json_mode)

        async def go():
            try:
                return await Engine(backend, fast_config()).run(f"trace {Q_GENERIC}")
            finally:
                await backend.aclose()

        rec = asyncio.run(go())
        log = srv.log
    assert len(rec.rounds) == 4 and all(e["response_format"]["type"] == expected for e in log)
    if json_mode == "schema":
        names = {e["tag"].split(":")[0]: e["response_format"]["json_schema"]["name"] for e in log}
        assert names == {"prelude": "PreludeReply", "round": "RoundReply", "coda": "CodaReply"}
        schema = next(e for e in log if e["tag"] == "coda")["response_format"]["json_schema"]["schema"]
        assert "final_answer" in schema["required"]


def test_invalid_json_mode_is_refused():
    with pytest.raises(ValueError, match="json_mode"):
        OpenAIBackend(model="ok", base_url="http://127.0.0.1:9/v1", json_mode="yaml")
