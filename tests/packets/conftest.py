"""Fixtures for the packet compiler tests: the reference's run-basic fixture and a small project on disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_FIXTURE = REPO / ".." / "shared" / "fixtures" / "packets" / "run-basic"
LOCAL_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run-basic"
STATE_FILES = ("next_pass_packet.json", "snapshot.json", "decision_log.jsonl")


def shared_fixture() -> Path:
    """The project's shared/ copy of the fixture (beside the repo in CI); a visible skip where it is absent.

    Every compatibility test runs on the in-repo copy (LOCAL_FIXTURE); this one only proves that copy is faithful.
    """
    if not SHARED_FIXTURE.is_dir():
        pytest.skip(
            f"shared/ is not beside the repo ({SHARED_FIXTURE.resolve()}): cannot re-verify the in-repo copy"
        )
    return SHARED_FIXTURE


def copy_inputs(source: Path, dest: Path) -> Path:
    """Copy a fixture run without its state/ (the compiler's outputs), writable."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("state"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return dest


def mythos(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None):
    """Run the real `mythos` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mythos", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A source root with a couple of real files that records can cite."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("".join(f"line {n}\n" for n in range(1, 21)))
    (root / "src" / "util.py").write_text("def helper():\n    return 42\n")
    (root / "README.md").write_text("# project\n")
    return root
