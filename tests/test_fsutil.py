"""The house atomic-write and slug helpers (``mythos.fsutil``): real files, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mythos.fsutil import atomic_copy, atomic_file, atomic_write, replace_dir, slug, temp_dir_beside


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]
    # permissions follow the umask like a plain open(), not mkstemp's 0600
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_file_error_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_killed_writer_never_leaves_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom mythos.fsutil import atomic_file\n"
        "with atomic_file(Path(sys.argv[1])) as h:\n    h.write(b'partial')\n    h.flush()\n    os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env=os.environ.copy(), check=False)
    assert proc.returncode == 9
    assert target.read_text() == "old"


def test_atomic_copy(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    atomic_copy(src, tmp_path / "out" / "dst.bin")
    assert (tmp_path / "out" / "dst.bin").read_bytes() == src.read_bytes()


def test_replace_dir_swaps_whole_directories(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    for version in ("v1", "v2"):
        staged = temp_dir_beside(target)
        (staged / "weights").write_text(version)
        replace_dir(staged, target)
    assert (target / "weights").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no staging or old directory left


@pytest.mark.parametrize(
    ("text", "limit", "default", "expected"),
    [
        ("Why is the Sky blue?", 64, "item", "why-is-the-sky-blue"),
        ("  --a__b--  ", 64, "item", "a-b"),
        ("!!!", 64, "question", "question"),
        ("", None, "", ""),
        ("abc def ghi", 5, "item", "abc-d"),
        ("abcd efg", 5, "item", "abcd"),  # a cut that ends on a dash drops it
        ("naïve café", None, "", "na-ve-caf"),  # only ASCII letters and digits survive
    ],
)
def test_slug(text: str, limit: int | None, default: str, expected: str) -> None:
    assert slug(text, limit, default=default) == expected


def test_fsutil_is_standard_library_only() -> None:
    """`mythos packet` imports fsutil and must start without torch."""
    code = "import sys, mythos.fsutil, mythos.packets.layout; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
