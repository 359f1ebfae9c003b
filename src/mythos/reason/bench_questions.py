"""Question sets with checkable answers for ``mythos bench``: generated (seeded) or read from JSONL.

The generated sets are small on purpose: a 2–3-step arithmetic word problem or a 2–3-hop lookup over facts
stated in the question has exactly one right answer, so accuracy can be checked by program — which the
protocol's open questions cannot be. Those (the calibration questions) form the ``open`` set, graded only by
the blind pairwise judge.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

SETS = ("arithmetic", "lookup", "open")
KINDS = ("number", "exact", "open")


@dataclass(frozen=True)
class BenchQuestion:
    id: str
    question: str
    answer: str  # "" for open questions
    kind: str  # number | exact | open
    set: str
    choices: tuple[str, ...] = field(default=())  # the candidate entities of a lookup (for the checker)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["choices"] = list(self.choices)
        return data


class QuestionFileError(ValueError):
    """A question file that cannot be used; the message names the line, the field and the fix."""


_ARITHMETIC = (
    (
        "A baker makes {a} loaves in the morning and {b} loaves in the afternoon. She sells {c} loaves. "
        "How many loaves does she have left?",
        lambda a, b, c, d: a + b - c,
    ),
    (
        "Tom has {a} marbles. He buys {b} bags with {c} marbles in each bag. How many marbles does he have now?",
        lambda a, b, c, d: a + b * c,
    ),
    (
        "A library has {a} books. It lends out {b} books on Monday and gets {c} books back on Tuesday. "
        "Then it buys {d} new books. How many books does the library have now?",
        lambda a, b, c, d: a - b + c + d,
    ),
    (
        "A farmer has {b} rows of apple trees with {c} trees in each row. {a} trees are cut down. "
        "How many apple trees are left?",
        lambda a, b, c, d: b * c - a,
    ),
    (
        "A train carries {a} passengers. At the first stop {b} people get off and {c} get on. At the second "
        "stop {d} people get off. How many passengers are on the train now?",
        lambda a, b, c, d: a - b + c - d,
    ),
    (
        "Each box holds {c} pencils. A school orders {b} boxes and already has {a} loose pencils. "
        "How many pencils does the school have in total?",
        lambda a, b, c, d: b * c + a,
    ),
)

_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena")
_CITIES = {
    "Oslo": "Norway",
    "Lima": "Peru",
    "Kyoto": "Japan",
    "Porto": "Portugal",
    "Lyon": "France",
    "Cork": "Ireland",
    "Perth": "Australia",
    "Quito": "Ecuador",
}
_PETS = ("a cat", "a dog", "a parrot", "a rabbit", "a turtle", "a hamster")


def arithmetic(n: int, seed: int = 0) -> list[BenchQuestion]:
    """``n`` word problems, each two or three operations on small integers (answers stay positive)."""
    rng = random.Random(f"arithmetic:{seed}")
    out = []
    for i in range(n):
        template, solve = _ARITHMETIC[i % len(_ARITHMETIC)]
        while True:
            a, b, c, d = rng.randint(20, 60), rng.randint(3, 12), rng.randint(2, 15), rng.randint(2, 15)
            value = solve(a, b, c, d)
            if value > 0:
                break
        out.append(
            BenchQuestion(
                id=f"arith-{seed}-{i:03d}",
                question=template.format(a=a, b=b, c=c, d=d),
                answer=str(value),
                kind="number",
                set="arithmetic",
            )
        )
    return out


def lookup(n: int, seed: int = 0) -> list[BenchQuestion]:
    """``n`` multi-hop lookups: facts in the question, the answer two or three hops away (exact match)."""
    rng = random.Random(f"lookup:{seed}")
    out = []
    for i in range(n):
        people = rng.sample(_NAMES, 4)
        cities = rng.sample(sorted(_CITIES), 4)
        lives = dict(zip(people, cities, strict=True))
        friend = {people[k]: people[(k + 1) % 4] for k in range(4)}
        facts = [f"{p} lives in {lives[p]}." for p in people]
        facts += [f"{p}'s best friend is {friend[p]}." for p in people]
        facts += [f"{c} is in {_CITIES[c]}." for c in cities]
        rng.shuffle(facts)
        who = rng.choice(people)
        if i % 2 == 0:  # two hops: person -> friend -> city
            ask = f"In which city does {who}'s best friend live?"
            answer, choices = lives[friend[who]], tuple(cities)
        else:  # three hops: person -> friend -> city -> country
            ask = f"In which country does {who}'s best friend live?"
            answer, choices = _CITIES[lives[friend[who]]], tuple(_CITIES[c] for c in cities)
        out.append(
            BenchQuestion(
                id=f"lookup-{seed}-{i:03d}",
                question="Facts: " + " ".join(facts) + " Question: " + ask,
                answer=answer,
                kind="exact",
                set="lookup",
                choices=choices,
            )
        )
    return out


def open_questions() -> list[BenchQuestion]:
    """The five calibration questions: no checkable answer, so only the pairwise judge grades them."""
    from mythos.reason.calibrate import CASES

    return [
        BenchQuestion(id=f"open-{c.id}", question=c.question, answer="", kind="open", set="open")
        for c in CASES
    ]


def generated(names: list[str], per_set: int, seed: int = 0) -> list[BenchQuestion]:
    """The named generated sets, interleaved so a bounded run (``--limit``) samples every set."""
    unknown = [name for name in names if name not in SETS]
    if unknown:
        raise QuestionFileError(f"--set {','.join(unknown)}: unknown set; use any of {', '.join(SETS)}")
    lists = []
    for name in names:
        if name == "arithmetic":
            lists.append(arithmetic(per_set, seed))
        elif name == "lookup":
            lists.append(lookup(per_set, seed))
        else:
            lists.append(open_questions())
    out = []
    for k in range(max((len(x) for x in lists), default=0)):
        out.extend(x[k] for x in lists if k < len(x))
    return out


def load_jsonl(path: str | Path) -> list[BenchQuestion]:
    """``{"question": …, "answer": …}`` per line; optional ``id``, ``kind`` (number|exact|open), ``choices``.

    ``kind`` defaults to ``number`` when the answer parses as a number, else ``exact``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"--questions {path}: cannot read it ({exc})") from None
    out, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"--questions {path} line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{where}: not JSON ({exc.msg}); expected {{question, answer}}") from None
        if not isinstance(data, dict):
            raise QuestionFileError(f"{where}: expected a JSON object {{question, answer}}")
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            raise QuestionFileError(f"{where}: field 'question' must be a non-empty string")
        answer = data.get("answer", "")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise QuestionFileError(f"{where}: field 'answer' must be a string or a number")
        answer = str(answer).strip()
        kind = data.get("kind") or ("open" if not answer else "number" if _is_number(answer) else "exact")
        if kind not in KINDS:
            raise QuestionFileError(f"{where}: field 'kind'={kind!r}; use one of {', '.join(KINDS)}")
        if kind != "open" and not answer:
            raise QuestionFileError(f'{where}: field \'answer\' is empty; give it or set "kind": "open"')
        if kind == "number" and not _is_number(answer):
            raise QuestionFileError(
                f"{where}: field 'answer'={answer!r} is not a number but kind is 'number'"
            )
        choices = data.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise QuestionFileError(f"{where}: field 'choices' must be a list of strings")
        qid = str(data.get("id") or f"{path.stem}-{number:04d}")
        if qid in seen:
            raise QuestionFileError(f"{where}: field 'id'={qid!r} is used twice; ids must be unique")
        seen.add(qid)
        out.append(BenchQuestion(qid, question.strip(), answer, kind, path.stem, tuple(choices)))
    if not out:
        raise QuestionFileError(f"--questions {path}: no questions in the file")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True
