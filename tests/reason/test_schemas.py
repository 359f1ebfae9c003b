"""Reply parsing: tolerant about shape (fences, chatter, labels), strict about the field each phase needs."""

import pytest

from mythos.reason.schemas import (
    CodaReply,
    PreludeReply,
    ReplyError,
    RoundReply,
    SubagentReply,
    extract_json,
    parse_reply,
)


def test_json_in_fences_with_chatter():
    text = 'Sure! Here it is:\n```json\n{"final_answer": "42", "residual_uncertainty": "none"}\n```\nBye.'
    reply = parse_reply(text, CodaReply)
    assert reply.final_answer == "42" and reply.residual_uncertainty == ["none"]


def test_bold_label_fallback_for_rounds():
    text = "### Round 2: Deepen\n**New insight:** Caches fail at the edges.\n**Convergence:** stable\n"
    reply = parse_reply(text, RoundReply)
    assert reply.new_insight == "Caches fail at the edges." and reply.status == "stable"


@pytest.mark.parametrize(
    "text, kind",
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("<html><body>502</body></html>", "unparseable"),
        ('{"analysis": "x"}', None),
    ],
)
def test_unusable_replies_name_the_problem(text, kind):
    if kind is None:  # a round without an insight parses: it means "no delta", which the engine handles
        assert parse_reply(text, RoundReply).new_insight is None
        return
    with pytest.raises(ReplyError) as info:
        parse_reply(text, CodaReply)
    assert info.value.kind == kind


def test_missing_required_field_is_unparseable():
    with pytest.raises(ReplyError, match="final_answer"):
        parse_reply('{"final_answer": ""}', CodaReply)
    with pytest.raises(ReplyError, match="independent_finding"):
        parse_reply('{"reasoning": "x"}', SubagentReply)


def test_prelude_normalizes_model_spelling():
    reply = parse_reply(
        '{"question_restated": "Q?", "primary_drivers": ["trade offs", "MULTI-HOP", "bogus"],'
        ' "complexity_checks": {"Multi-hop": "yes", "high stakes": true}, "problem_type": "Technical Design",'
        ' "not_asking": "a history lesson"}',
        PreludeReply,
    )
    assert reply.primary_drivers == ["Trade-offs", "Multi-hop"]
    assert reply.complexity_checks == {"multi_hop": True, "high_stakes": True}
    assert reply.problem_type == "technical_design" and reply.not_asking == ["a history lesson"]


def test_no_insight_forms_become_none():
    for value in ("No novel insight under this lens — nothing new", "none", None, ""):
        assert RoundReply.model_validate({"new_insight": value}).new_insight is None


def test_extract_json_prefers_a_whole_object():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json("no json here") is None
