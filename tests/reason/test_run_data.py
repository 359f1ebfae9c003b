"""Issue 11 §2: the run as explicit data — a pure halting function, vocabularies defined once, no engine
internals read across modules, no import cycles, no private names imported across modules."""

import ast
import json
from pathlib import Path

import pytest

import mythos.reason
from mythos.reason.engine import HALTING_REASONS
from mythos.reason.halting import HaltingConfig, judge_round
from mythos.reason.schemas import RoundReply
from mythos.reason.vocab import HaltReason, Mode, RoundStatus

from .helpers import Q_GENERIC, run

PACKAGE = Path(mythos.reason.__file__).parent
CFG = HaltingConfig()


def reply(**fields):
    base = {"new_insight": "Squash merges hide the history the tool needs.", "status": "evolving"}
    return RoundReply.model_validate({**base, **fields})


@pytest.mark.parametrize(
    "fields, chain, halt, accepted",
    [
        ({}, [], None, True),
        ({"status": "stable"}, [], HaltReason.SELF_CONSISTENT, True),
        ({"non_trivial": False}, [], HaltReason.TRIVIAL_DELTA, True),
        ({"new_insight": None}, [], HaltReason.NO_DELTA, False),
        ({}, ["Squash merges hide the history the tool needs."], HaltReason.NO_DELTA, False),
        ({"introduces_confusion": True}, [], HaltReason.NEGATIVE_DELTA, False),
        ({"status": "negative-delta"}, [], HaltReason.NEGATIVE_DELTA, False),
        (
            {"contradicts": [1], "better_supported_than_contradicted": False},
            ["x"],
            HaltReason.NEGATIVE_DELTA,
            False,
        ),
        ({"contradicts": [1], "better_supported_than_contradicted": True}, ["x"], None, True),
    ],
)
def test_judge_round_is_a_pure_function_of_reply_and_chain(fields, chain, halt, accepted):
    chain_before = list(chain)
    verdict = judge_round(reply(**fields), chain, CFG)
    assert verdict.halt == halt and (verdict.insight is not None) == accepted
    assert chain == chain_before  # nothing mutated
    assert verdict.discarded == (halt == HaltReason.NEGATIVE_DELTA)


def test_judge_round_failed_and_no_halting():
    assert judge_round(None, [], CFG).halt == HaltReason.ROUND_FAILED
    free = HaltingConfig(halting=False)
    assert judge_round(reply(status="stable"), [], free).halt is None
    assert judge_round(reply(introduces_confusion=True), [], free).discarded


def test_vocabularies_are_defined_once_and_serialise_as_strings():
    assert "engine_error" in HALTING_REASONS and set(HALTING_REASONS) == {h.value for h in HaltReason}
    rec, _ = run(f"trace {Q_GENERIC}")
    data = json.loads(rec.to_json())
    assert data["halting"]["reason"] in HALTING_REASONS and data["route"]["final_mode"] == Mode.TRACE
    assert all(r["status"] in {s.value for s in RoundStatus} for r in data["rounds"])
    assert type(data["halting"]["reason"]) is str and data["outcome"] == "answered"


def _imports(path: Path) -> set[str]:
    """mythos.reason modules a file imports anywhere (functions included), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mythos.reason"):
            if node.module == "mythos.reason":
                out |= {f"mythos.reason.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mythos.reason.")}
    return out


def test_no_import_cycles_in_the_reasoning_engine():
    graph = {f"mythos.reason.{p.stem}": _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    for a, b in [("engine", "agent"), ("scripted", "canned"), ("cli", "calibrate")]:
        assert f"mythos.reason.{a}" in graph and f"mythos.reason.{b}" in graph[f"mythos.reason.{a}"]


NOT_OURS = ("local_model.py",)  # reason-bench's files: their imports are theirs to keep clean


def test_no_private_names_cross_modules_and_no_engine_internals():
    for path in PACKAGE.glob("*.py"):
        if path.name in NOT_OURS or path.name.startswith("bench"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mythos"):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                assert not private, f"{path.name} imports private {private} from {node.module}"
    for name in ("agent.py", "packet_bridge.py", "packet_ingest.py", "vote.py"):
        code = ast.unparse(ast.parse((PACKAGE / name).read_text(encoding="utf-8")))  # code, not docstrings
        names = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
        attrs = {n.attr for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Attribute)}
        assert "engine" not in names and "Engine" not in names, name
        assert not attrs & {"_rounds", "inv", "_halt", "_coda"}, name


def test_record_parts_are_typed_and_serialise_to_the_old_json():
    from mythos.reason.record import Coda, Halting, Merge, Route

    rec, _ = run(f"trace {Q_GENERIC}")
    assert isinstance(rec.route, Route) and isinstance(rec.halting, Halting) and isinstance(rec.coda, Coda)
    data = json.loads(rec.to_json())
    assert data["route"] == {
        "score": 3,
        "default_mode": "silent",
        "forced_mode": "trace",
        "final_mode": "trace",
        "forced": True,
        "forced_by": "keyword:trace",
    }
    assert set(data["halting"]) == {"reason", "at_round", "skipped_lenses", "budget_rounds"}
    assert "fallback" not in data["coda"] and data["coda"]["final_answer"]
    # an unset part serialises as the empty dict it used to be, and reads like one
    assert Halting().to_dict() == {} and not Halting() and Halting().get("reason", "x") == "x"
    merge = Merge(synthesis="s", silent=True, source="none", failed=True)
    assert merge.to_dict() == {
        "synthesis": "s",
        "convergent_points": [],
        "tensions": [],
        "silent": True,
        "source": "none",
        "failed": True,
    }
    with pytest.raises(KeyError):
        rec.route["no_such_field"] = 1
