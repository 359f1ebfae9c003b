"""Byte-for-byte compatibility with the reference compiler's own fixture output."""

from __future__ import annotations

from pathlib import Path

from mythos.packets import compile_run

from .conftest import LOCAL_FIXTURE, STATE_FILES, copy_inputs, shared_fixture


def test_local_fixture_copy_is_identical_to_shared():
    shared = shared_fixture()
    shared_files = sorted(p.relative_to(shared) for p in shared.rglob("*") if p.is_file())
    local_files = sorted(p.relative_to(LOCAL_FIXTURE) for p in LOCAL_FIXTURE.rglob("*") if p.is_file())
    assert shared_files == local_files
    for rel in shared_files:
        assert (shared / rel).read_bytes() == (LOCAL_FIXTURE / rel).read_bytes(), rel


def test_compile_reproduces_reference_state_byte_for_byte(tmp_path: Path):
    run = copy_inputs(LOCAL_FIXTURE, tmp_path / "run")
    packet = compile_run(run)
    for name in STATE_FILES:
        assert (run / "state" / name).read_bytes() == (LOCAL_FIXTURE / "state" / name).read_bytes(), name
    assert packet["pass_id"] == "pass-0001"
    assert [item["id"] for item in packet["candidate_actions"]] == ["action:vf-2"]


def test_recompile_same_pass_keeps_one_decision_line(tmp_path: Path):
    run = copy_inputs(LOCAL_FIXTURE, tmp_path / "run")
    compile_run(run)
    compile_run(run)
    for name in STATE_FILES:
        assert (run / "state" / name).read_bytes() == (LOCAL_FIXTURE / "state" / name).read_bytes(), name


def test_fixture_packet_validates_and_validator_rejects_bad_packets():
    import json

    from mythos.packets.schema import validate

    packet = json.loads((LOCAL_FIXTURE / "state" / "next_pass_packet.json").read_text())
    assert validate(packet) == []
    bad = json.loads(json.dumps(packet))
    bad["evidence"][0]["surprise"] = 1
    bad["sources"][0]["hash"] = "NOTHEX"
    del bad["halt_signals"][0]["rationale"]
    bad["trusted_facts"][0]["source_ids"] = []
    bad["schema_version"] = "1.0.0"
    problems = validate(bad)
    assert any("must be '1.1.0'" in p for p in problems)
    assert any("unexpected field 'surprise'" in p for p in problems)
    assert any("does not match" in p for p in problems)
    assert any("missing required field 'rationale'" in p for p in problems)
    assert any("at least 1 item" in p for p in problems)


def test_outputs_get_ordinary_permissions(tmp_path: Path):
    import os

    run = copy_inputs(LOCAL_FIXTURE, tmp_path / "run")
    compile_run(run)
    umask = os.umask(0)
    os.umask(umask)
    for name in STATE_FILES:
        assert (run / "state" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
