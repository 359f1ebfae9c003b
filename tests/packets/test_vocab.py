"""Issue 11 §4: the packet wing's vocabularies are defined once, in mythos/packets/vocab.py."""

from __future__ import annotations

import ast
from pathlib import Path

from mythos.packets import vocab
from mythos.packets.contradictions import CONTRADICTION_RULES

PACKAGE = Path(vocab.__file__).resolve().parent
ENUMS = (
    vocab.EvidenceKind,
    vocab.RefKind,
    vocab.FindingStatus,
    vocab.Severity,
    vocab.HaltKind,
    vocab.ContradictionForm,
    vocab.GateCheck,
    vocab.GateWarning,
)


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_no_module_respells_a_vocabulary_term():
    # Hyphenated terms cannot be ordinary words or field names, so any literal copy is a second definition.
    terms = {member.value for enum in ENUMS for member in enum if "-" in member.value}
    assert {"subagent-session", "codex-synthesis", "ready-to-halt", "direct-ref-ratio"} <= terms
    offenders = {
        path.name: sorted(_string_constants(path) & terms)
        for path in PACKAGE.glob("*.py")
        if path.name != "vocab.py"
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_every_gate_failure_check_is_a_gate_check(tmp_path: Path, project: Path):
    from mythos.packets import gate_run, init_run

    run = init_run(tmp_path / "run", task="vocab", root=project)
    result = gate_run(run)
    assert result.failures
    assert {f["check"] for f in result.failures} <= set(vocab.GateCheck)
    assert all(type(f["check"]) is str for f in result.failures)  # plain strings in JSON and in the packet


def test_rule_names_are_unique():
    names = [rule.name for rule in CONTRADICTION_RULES]
    assert len(names) == len(set(names))
