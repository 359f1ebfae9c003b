"""Issue 14 §1: template text, truncated replies and failed Preludes are never passed off as answers."""

import asyncio
import json
import os
import subprocess
import sys

from mythos.reason import OpenAIBackend, ScriptedBackend
from mythos.reason.canned import template_reply
from mythos.reason.engine import Engine
from mythos.reason.loopback import LoopbackServer
from mythos.reason.prompts import TAG_PREFIX, coda_messages, direct_messages, prelude_messages, tag_of
from mythos.reason.schemas import (
    CodaReply,
    MergeReply,
    PreludeReply,
    ReplyError,
    RoundReply,
    SubagentReply,
    json_schema,
    parse_reply,
    shape_dict,
)
from mythos.reason.scripted import Fault

from .helpers import Q_GENERIC, Q_SQLITE, fast_config, responder, run

MODELS = (PreludeReply, RoundReply, SubagentReply, MergeReply, CodaReply)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def test_every_placeholder_is_a_description_not_a_value():
    for model in MODELS:
        for text in _strings(shape_dict(model)):
            assert text.startswith("<") and text.endswith(">"), (model.__name__, text)
    # the answer-bearing field comes first in the shape the model sees
    assert list(shape_dict(CodaReply))[0] == "final_answer"
    assert list(shape_dict(MergeReply))[0] == "synthesis"


def test_a_copied_placeholder_is_rejected_naming_the_field():
    for model in MODELS:
        try:
            parse_reply(json.dumps(shape_dict(model)), model)
        except ReplyError as exc:
            assert exc.kind == "template"
        else:
            raise AssertionError(f"{model.__name__}: the template itself was accepted")
    for filler in ("the answer", "The answer.", "<the answer>", "one sentence"):
        try:
            parse_reply(json.dumps({"final_answer": filler}), CodaReply)
        except ReplyError as exc:
            assert exc.kind == "template" and "final_answer" in str(exc)
        else:
            raise AssertionError(f"{filler!r} accepted as an answer")
    assert parse_reply('{"final_answer": "Use SQLite: one user, one file."}', CodaReply).final_answer


def test_json_schema_requires_every_key_at_every_level():
    for model in MODELS:
        schema = json_schema(model)
        assert (
            set(schema["required"]) == set(schema["properties"]) and schema["additionalProperties"] is False
        )
        for sub in schema.get("$defs", {}).values():
            assert set(sub["required"]) == set(sub["properties"])
    checks = json_schema(PreludeReply)["properties"]["complexity_checks"]
    assert set(checks["required"]) == {
        "multi_hop",
        "ambiguous_tradeoffs",
        "hidden_assumptions",
        "novel_domain",
        "high_stakes",
    }


def test_call_tag_is_the_last_line_and_the_system_prompt_is_shared():
    rec, backend = run(f"trace {Q_GENERIC}")
    systems = {r.messages[0]["content"] for r in backend.requests}
    assert len(systems) == 1 and TAG_PREFIX not in next(iter(systems))
    for request in backend.requests:
        assert request.messages[-1]["content"].rstrip().splitlines()[-1] == f"{TAG_PREFIX}{request.tag}"
        assert tag_of(request.messages) == request.tag
    # every prompt after the system prompt starts with the verbatim question: a shared prefix to cache
    firsts = {r.messages[1]["content"].split(">>>")[0] for r in backend.requests}
    assert len(firsts) == 1
    assert coda_messages("Q?", {}, "trace", [], [])[-1]["content"].endswith(f"{TAG_PREFIX}coda")
    prompt = prelude_messages("Q?")[1]["content"]
    assert prompt.index('"question_restated"') < prompt.index('"complexity_checks"')
    assert "<" in direct_messages("Q?", {})[1]["content"]


def test_template_echoes_end_in_no_answer_not_exit_zero():
    backend = ScriptedBackend(lambda request: template_reply(request.tag))
    rec, _ = run(Q_GENERIC, backend=backend)
    assert rec.outcome == "no_answer" and rec.coda["fallback"]
    assert all(c.error_kind == "template" for c in rec.calls)
    assert rec.coda["final_answer"].startswith("No answer") and "placeholder" in rec.no_answer_reason
    assert rec.rendered.startswith("## Answer\nNo answer: the model did not produce one.")
    # each echo got one repair attempt
    assert all(c.repairs == 1 for c in rec.calls)


def test_template_echo_over_http_exits_3_and_says_why(tmp_path):
    with LoopbackServer() as srv:
        env = dict(os.environ, MYTHOS_REASON_RECORDS=str(tmp_path), HOME=str(tmp_path))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mythos",
                "think",
                "--base-url",
                srv.base_url,
                "--model",
                "template",
                "--deadline",
                "30",
                Q_GENERIC,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert proc.returncode == 3, proc.stderr
    assert "no real answer" in proc.stderr and "placeholder" in proc.stderr
    assert "## Answer\nNo answer:" in proc.stdout and "<your actual answer" not in proc.stdout.split("---")[0]


def test_a_truncated_reply_is_retried_with_room_and_never_the_answer():
    canned = json.dumps({"final_answer": "Adopt it for the changelog tooling.", "residual_uncertainty": []})
    # cut once: the retry asks for twice the room and its reply is used
    rec, backend = run(Q_GENERIC, faults={"coda": [Fault("truncated", text=canned[:30]), None]})
    coda = next(c for c in rec.calls if c.phase == "coda")
    assert coda.status == "ok" and coda.repairs == 1 and rec.outcome == "answered"
    assert coda.replies[0]["finish_reason"] == "length"
    # cut every time: the call fails, the run has no answer, and the cut JSON is not printed as one
    rec, _ = run(Q_GENERIC, faults={"coda": Fault("truncated", text=canned[:30])})
    assert rec.outcome == "no_answer" and canned[:30] not in rec.coda["final_answer"]
    assert "cut off at the token limit" in rec.no_answer_reason


def test_truncation_over_http_is_not_an_answer():
    with LoopbackServer() as srv:
        backend = OpenAIBackend(model="truncate", base_url=srv.base_url)

        async def go():
            try:
                return await Engine(backend, fast_config(mode="direct")).run(Q_GENERIC)
            finally:
                await backend.aclose()

        rec = asyncio.run(go())
    assert rec.outcome == "no_answer"
    assert {c.error_kind for c in rec.calls} == {"truncated"}
    assert all(reply["finish_reason"] == "length" for c in rec.calls for reply in c.replies)


def test_a_failed_prelude_uses_the_default_diagnosis_and_silent_mode():
    rec, backend = run(Q_SQLITE, faults={"prelude": Fault("http_4xx", "HTTP 400: bad request")})
    assert rec.route["final_mode"] == "silent" and rec.route["prelude_failed"]
    assert rec.prelude["primary_drivers"] == ["Multi-hop"] and rec.prelude["complexity"] == 1
    assert len(rec.rounds) >= 3 and rec.outcome == "answered"
    assert "used the default diagnosis and silent mode" in rec.rendered
    # a forced mode still wins over the fallback
    rec, _ = run(f"trace {Q_SQLITE}", faults={"prelude": Fault("http_4xx")})
    assert rec.route["final_mode"] == "trace"


def test_prose_that_is_only_filler_is_not_an_answer():
    rec, _ = run(Q_GENERIC, mode="direct", faults={"direct": Fault("text", "The answer.")})
    assert rec.outcome == "no_answer"
    rec, _ = run(
        Q_GENERIC, mode="direct", faults={"direct": Fault("text", "Yes: it keeps the history readable.")}
    )
    assert rec.outcome == "answered" and rec.coda["final_answer"].startswith("Yes")


def test_canned_answers_do_not_carry_the_calibration_keywords():
    from mythos.reason.calibrate import CASES

    for case in CASES:
        rec, _ = run(f"quick {case.question}", patches=None, backend=ScriptedBackend(responder()))
        answer = rec.coda["final_answer"].lower()
        assert not any(word in answer for word in case.silent_keywords), case.id


def test_a_reply_that_fills_its_whole_room_counts_as_cut_even_if_the_server_says_stop():
    from mythos.reason.calls import CallPolicy
    from mythos.reason.engine import EngineConfig

    words = json.dumps({"final_answer": " ".join(["very"] * 40)})  # finish "stop", exactly the room
    backend = ScriptedBackend(lambda request: words)
    room = len(words.split())
    cfg = EngineConfig(
        mode="direct", packets=False, policy=CallPolicy(max_tokens_per_call=room, max_repairs=0)
    )
    rec = asyncio.run(Engine(backend, cfg).run(Q_GENERIC))
    direct = rec.calls[-1]
    assert direct.replies[0]["finish_reason"] == "stop" and direct.error_kind == "truncated"
    assert rec.outcome == "no_answer"


def test_a_few_copied_side_fields_are_dropped_not_used():
    shape = shape_dict(RoundReply)
    reply = dict(shape, new_insight="Squash merges hide the history the changelog tool needs.")
    reply.update(analysis="Challenge applied to merges", what_changed="open -> narrowed", status="stable")
    reply.update(non_trivial=True, introduces_confusion=False, contradicts=[], needs_user_verification=False)
    parsed = parse_reply(json.dumps(reply), RoundReply)  # two side fields still hold their placeholders
    assert parsed.new_insight.startswith("Squash") and parsed.status == "stable"
    assert parsed.missed_driver is None and parsed.better_supported_than_contradicted is None
    mostly_copied = dict(shape, new_insight="Squash merges hide the history.")
    try:
        parse_reply(json.dumps(mostly_copied), RoundReply)
    except ReplyError as exc:
        assert exc.kind == "template"
    else:
        raise AssertionError("a reply copied field by field was accepted")


def test_a_short_answer_reworded_from_a_placeholder_is_an_echo_and_a_real_one_is_not():
    """Seen on SmolLM2 in agent mode: "This particular question hard to answer", built from the Prelude
    placeholder "what makes this particular question hard"; a real short answer shares no such run of words."""
    from mythos.reason.schemas import MergeReply, PreludeReply, SubagentReply, template_echoes

    shown = "This particular question hard to answer"
    for model in (MergeReply, SubagentReply):
        assert model.CONTENT in template_echoes({model.CONTENT: shown}, model)
        assert model.CONTENT not in template_echoes({model.CONTENT: "The total is 42 apples."}, model)
    assert PreludeReply.CONTENT is None or PreludeReply.CONTENT not in template_echoes(
        {PreludeReply.CONTENT: "Use SQLite because the data fits on one machine."}, PreludeReply
    )
