"""`mythos skill install`: write the host contract and copy the host's templates into a skill directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mythos.packets.errors import PacketError
from mythos.packets.layout import atomic_write

from .contract import HOSTS, render_contract

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The destination is the host's configuration directory (``.claude`` / ``.codex``): the contract goes to
# skills/mythos/SKILL.md inside it, and templates keep their layout relative to it, so a template at
# templates/claude/commands/mythos.md lands in .claude/commands/ where Claude Code looks for slash commands.
CONTRACT_REL = "skills/mythos/SKILL.md"


def default_destination(host: str, *, user: bool = False, cwd: Path | None = None) -> Path:
    """``./.claude`` / ``./.codex`` in the current project, or ``~/.claude`` / ``~/.codex`` with ``user``."""
    base = Path.home() if user else (cwd or Path.cwd())
    return base / f".{host}"


@dataclass
class InstallResult:
    destination: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "ok": True,
            "destination": str(self.destination),
            "written": self.written,
            "unchanged": self.unchanged,
        }


def install_skill(
    host: str,
    dest: str | Path | None = None,
    *,
    force: bool = False,
    user: bool = False,
    templates: Path | None = None,
) -> InstallResult:
    """Install the contract (``<dest>/skills/mythos/SKILL.md``) plus every file under ``templates/<host>/`` (layout
    kept, relative to ``dest``). Refuses to overwrite a
    different existing file unless ``force``; identical files are left alone, so re-installing is harmless."""
    if host not in HOSTS:
        raise PacketError(
            f"unknown host {host!r}", field="host", value=host, fix=f"use one of {', '.join(HOSTS)}"
        )
    destination = Path(dest) if dest is not None else default_destination(host, user=user)
    if destination.exists() and not destination.is_dir():
        raise PacketError(
            f"{destination} exists and is not a directory",
            field="dest",
            value=str(destination),
            fix="choose a directory with --dest",
        )
    files: dict[str, bytes] = {CONTRACT_REL: render_contract(host).encode("utf-8")}
    source = (templates if templates is not None else TEMPLATES) / host
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(source).as_posix()
                if rel == CONTRACT_REL:
                    raise PacketError(
                        f"template {path} would replace the mythos contract",
                        field="templates",
                        value=rel,
                        fix="rename the template",
                    )
                files[rel] = path.read_bytes()
    conflicts = []
    for rel, data in files.items():
        target = destination / rel
        if target.exists() and (not target.is_file() or target.read_bytes() != data):
            conflicts.append(rel)
    if conflicts and not force:
        raise PacketError(
            f"{destination} already holds different {', '.join(conflicts)}",
            field="dest",
            value=str(destination),
            fix="pass --force to overwrite, or --dest elsewhere",
        )
    result = InstallResult(destination)
    for rel, data in files.items():
        target = destination / rel
        if target.is_file() and target.read_bytes() == data:
            result.unchanged.append(rel)
            continue
        atomic_write(target, data)
        result.written.append(rel)
    return result
