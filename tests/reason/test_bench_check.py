"""Answer checking and question sets for ``mythos bench``: strict, the same for every strategy."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mythos.reason.bench_check import (
    canonical,
    classify,
    extract_answer,
    is_correct,
    is_echo,
    is_template,
    normalize,
    parse_number,
)
from mythos.reason.bench_questions import QuestionFileError, arithmetic, generated, load_jsonl, lookup


def test_extract_answer_takes_the_last_marker_line_else_the_whole_reply():
    assert extract_answer("Step 1: 3+4=7.\nAnswer: 7 apples\nthanks") == "7 apples"
    assert extract_answer("answer: 3\nWait. Final answer: 12") == "12"
    assert extract_answer("The answer is: Oslo.") == "Oslo."
    assert extract_answer("  just prose 5  ") == "just prose 5"
    assert extract_answer("Answer:") == ""


@pytest.mark.parametrize(
    "span, value",
    [("42", "42"), ("$1,234", "1234"), ("12.0 loaves", "12"), ("−5", "-5"), ("3 then 7", "7"), ("x", None)],
)
def test_numbers_are_normalised_and_the_last_one_counts(span, value):
    got = parse_number(span)
    assert (None if got is None else format(got, "f")) == value


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_any_integer_written_with_thousands_separators_matches_itself(n):
    assert is_correct(f"Answer: {n:,} items", str(n), "number")
    assert not is_correct(f"Answer: {n + 1:,}", str(n), "number")


def test_numeric_check_uses_the_last_number_not_any_number():
    assert not is_correct("45 - 5 = 40 so 38", "40", "number")
    assert is_correct("45 - 5 = 40", "40", "number")
    assert not is_correct("no digits here", "40", "number")


def test_lookups_need_an_exact_match_or_exactly_one_candidate_named():
    choices = ("Oslo", "Lima", "Kyoto")
    assert is_correct("The Oslo.", "Oslo", "exact", choices)
    assert is_correct("Ben's friend lives in Oslo", "Oslo", "exact", choices)
    assert not is_correct("Oslo or Lima", "Oslo", "exact", choices)  # hedging over candidates is wrong
    assert not is_correct("Ben's friend lives in Oslo", "Oslo", "exact", ())  # no candidates: exact only
    assert not is_correct("Osloville", "Oslo", "exact", choices)
    assert normalize("  The  Kyoto!! ") == "kyoto"


def test_template_answers_are_counted_apart_from_wrong_ones():
    prompt = (
        'Reply as JSON: {"final_answer": "one precise sentence", "insight": "the integrated view"}\nQ: 2+2?'
    )
    assert is_template("the answer", "", "Q")
    assert is_template("One precise sentence.", prompt, "Q: 2+2?")
    assert is_template("Independent findings:\n- Challenge: the integrated view", prompt, "Q: 2+2?")
    assert not is_template("4", prompt, "Q: 2+2?")  # a one-word answer is never called a template
    assert not is_template("Oslo is the city", prompt, "Q: 2+2?")
    outcome, _ = classify(
        "one precise sentence", expected="4", kind="number", question="Q: 2+2?", prompt_text=prompt
    )
    assert outcome == "template"


def test_echo_no_answer_and_order_of_checks():
    q = "How many loaves does the baker have left after selling some?"
    assert is_echo("How many loaves does the baker have left?", q)
    assert (
        classify("How many loaves does the baker have left?", expected="3", kind="number", question=q)[0]
        == "echo"
    )
    # a right answer that restates the question is still right
    assert classify(q + " Answer: 3", expected="3", kind="number", question=q)[0] == "correct"
    # restating the question with a new number is an attempt (here a wrong one), not an echo
    attempt = "How many loaves does the baker have left after selling some? 5"
    assert not is_echo(attempt, q)
    assert classify(attempt, expected="3", kind="number", question=q)[0] == "wrong"
    assert classify("   ", expected="3", kind="number", question=q)[0] == "no_answer"
    assert classify("Answer: 4", expected="3", kind="number", question=q)[0] == "wrong"
    assert classify("Use SQLite.", expected="", kind="open", question="SQLite or Postgres?")[0] == "open"


def test_votes_compare_in_canonical_form():
    assert canonical("Answer: 1,200 apples", "number") == canonical("1200", "number") == "1200"
    assert canonical("The Oslo.", "exact") == canonical("oslo", "exact")


def test_generated_sets_are_deterministic_and_interleaved():
    assert arithmetic(6, seed=3) == arithmetic(6, seed=3)
    assert arithmetic(6, seed=3) != arithmetic(6, seed=4)
    mixed = generated(["arithmetic", "lookup"], 3)
    assert [q.set for q in mixed] == ["arithmetic", "lookup"] * 3
    assert all(int(q.answer) > 0 for q in arithmetic(30))
    with pytest.raises(QuestionFileError, match="unknown set"):
        generated(["poetry"], 3)


def _solve_lookup(text: str) -> str:
    """An independent reader of the lookup facts: follows the hops the question asks for."""
    lives = dict(re.findall(r"(\w+) lives in (\w+)\.", text))
    friend = dict(re.findall(r"(\w+)'s best friend is (\w+)\.", text))
    country = dict(re.findall(r"(\w+) is in (\w+)\.", text))
    who = re.search(r"does (\w+)'s best friend live", text).group(1)
    city = lives[friend[who]]
    return country[city] if "which country" in text else city


def test_lookup_answers_follow_from_the_stated_facts():
    questions = lookup(12, seed=1)
    assert {q.kind for q in questions} == {"exact"}
    for q in questions:
        assert _solve_lookup(q.question) == q.answer
        assert q.answer in q.choices


def test_jsonl_questions_and_errors_that_name_line_and_field(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text(
        json.dumps({"question": "2+3?", "answer": 5})
        + "\n\n"
        + json.dumps({"question": "Capital of Peru?", "answer": "Lima", "id": "peru"})
        + "\n"
        + json.dumps({"question": "Tabs or spaces?"})
        + "\n"
    )
    qs = load_jsonl(good)
    assert [(q.id, q.kind, q.answer) for q in qs] == [
        ("mine-0001", "number", "5"),
        ("peru", "exact", "Lima"),
        ("mine-0004", "open", ""),
    ]
    cases = [
        ("not json", "line 1: not JSON"),
        (json.dumps({"answer": 3}), "field 'question'"),
        (json.dumps({"question": "q", "answer": [1]}), "field 'answer'"),
        (json.dumps({"question": "q", "answer": "x", "kind": "number"}), "is not a number"),
        (json.dumps({"question": "q", "answer": "x", "kind": "essay"}), "field 'kind'"),
        (json.dumps({"question": "q", "kind": "exact"}), "'answer' is empty"),
    ]
    for text, message in cases:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text + "\n")
        with pytest.raises(QuestionFileError, match=re.escape(message)):
            load_jsonl(bad)
    with pytest.raises(QuestionFileError, match="cannot read"):
        load_jsonl(tmp_path / "missing.jsonl")
