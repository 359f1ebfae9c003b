"""The docs are true: every `mythos` command is documented, and the docs' runnable code blocks run as written.

Block convention (docs/cli.md, "Docs that run"): a fenced ```python block is executed (one namespace per doc, in
order, in a temp directory); a ```console block runs each `$ ` command with bash in that doc's temp directory (a
command continues on the next lines while a quote is open) and the first output line shown under it must appear
in what it prints; a ```bash / ```sh block runs as one `bash -e` script there. Other fences (output, json,
markdown) are not code. A block that cannot run offline or is slow carries, on the line right above its fence,
`<!-- docs-test: skip: REASON -->`; the reason is required.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mythos.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
# Docs whose blocks run here (README.md's quick start is what CI itself runs).
RUN_DOCS = [
    "model.md",
    "model-api.md",
    "model-tools.md",
    "hf.md",
    "packets.md",
    "cli.md",
    "train.md",
    "reason.md",
    "infer.md",
]
RUNNABLE = {"python", "console", "bash", "sh"}
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip:\s*(\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^(`{3,})([\w-]*)\s*$")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None  # the reason, when marked


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(1), match.group(2), i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), len(lines))
        marker = SKIP.match(lines[start - 1]) if start else None
        found.append(
            Block(doc, start + 1, lang, "\n".join(lines[start + 1 : end]) + "\n", marker and marker[1])
        )
        i = end + 1
    return found


def console_commands(text: str) -> list[tuple[str, str | None]]:
    """(command, first output line shown or None) for each `$ ` prompt of a console block."""
    out: list[tuple[str, str | None]] = []
    lines, i = text.splitlines(), 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while True:
            try:
                shlex.split(command)
                break
            except ValueError:  # an open quote: the command goes on
                i += 1
                command += "\n" + lines[i]
        i += 1
        shown = lines[i] if i < len(lines) and lines[i] and not lines[i].startswith("$ ") else None
        out.append((command, shown))
    return out


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # mythos, mythos-skill
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _shell(script: str, cwd: Path, where: str) -> str:
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (
        f"{where}: exit {result.returncode}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    )
    return result.stdout


@pytest.mark.parametrize("name", RUN_DOCS)
def test_doc_code_blocks_run(name, tmp_path, monkeypatch, capsys):
    doc = ROOT / "docs" / name
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{name}"}
    ran = 0
    for block in blocks(doc):
        if block.lang not in RUNNABLE or block.skip:
            continue
        where = f"{name}:{block.line}"
        if block.lang == "python":
            exec(compile(block.text, where, "exec"), namespace)  # noqa: S102
        elif block.lang == "console":
            for command, shown in console_commands(block.text):
                stdout = _shell(command, tmp_path, f"{where}: $ {command.splitlines()[0]}")
                if shown is not None:
                    assert shown.strip() in stdout, f"{where}: `{command}` did not print {shown!r}"
        else:
            _shell(block.text, tmp_path, where)
        ran += 1
    if name == "model.md":  # the walkthrough's own end state
        assert namespace["cache"].pos == 9
        assert namespace["greedy"].shape == (1, 8)
    # Every doc either runs something or says why each of its code blocks cannot run.
    code = [b for b in blocks(doc) if b.lang in RUNNABLE]
    assert ran or all(b.skip for b in code)


def test_skip_markers_give_a_reason_and_sit_on_code_blocks():
    for doc in sorted((ROOT / "docs").glob("*.md")):
        lines = doc.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if not (line.startswith("<!--") and "docs-test" in line):  # an indented one is an example
                continue
            assert SKIP.match(line), f"{doc.name}:{n + 1}: write `<!-- docs-test: skip: REASON -->`"
            assert n + 1 < len(lines) and FENCE.match(lines[n + 1]), (
                f"{doc.name}:{n + 1}: put it right above a fence"
            )


def _code_text() -> str:
    """Everything in a code span or a fenced block of README.md and docs/*.md."""
    parts = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        parts += re.findall(r"^(`{3,}).*?\n(.*?)^\1", text, flags=re.S | re.M)
        parts += [("", span) for span in re.findall(r"`([^`\n]+)`", text)]
    return "\n".join(body for _, body in parts)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_is_documented(command):
    """`mythos COMMAND` appears as code (a usage line or an example) in README.md or docs/*.md."""
    assert re.search(rf"(^|[\s`$(]|&& )mythos {re.escape(command)}\b", _code_text(), flags=re.M), (
        f"`mythos {command}` is in mythos.cli.COMMANDS but no code span or block of README.md/docs shows it"
    )
