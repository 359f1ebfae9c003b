"""`mythos skill install --host claude|codex [--dest DIR] [--user] [--force] [--json]` and `mythos skill show`.

The contract lands in ``<dest>/skills/mythos/SKILL.md`` (dest: ``./.claude`` or ``./.codex``; ``~/.<host>`` with
``--user``), and every file under ``templates/<host>/`` is copied to the same relative path under ``dest``.
"""

from __future__ import annotations

import argparse
import json
import sys

from mythos.packets.errors import PacketError

from .contract import HOSTS, render_contract
from .install import install_skill


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mythos skill", description="Install the mythos contract for an agent host."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser(
        "install", help="write skills/mythos/SKILL.md and the host's templates into its config dir"
    )
    install.add_argument("--host", required=True, choices=HOSTS)
    install.add_argument("--dest", help="the host's config directory (default: ./.<host> in this project)")
    install.add_argument("--user", action="store_true", help="install into ~/.<host> instead")
    install.add_argument("--force", action="store_true", help="overwrite files that differ")
    install.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="print the contract for a host")
    show.add_argument("--host", required=True, choices=HOSTS)
    return parser


def skill_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "show":
        sys.stdout.write(render_contract(args.host))
        return 0
    try:
        result = install_skill(args.host, args.dest, force=args.force, user=args.user)
    except PacketError as exc:
        if args.json:
            print(json.dumps(exc.to_json(), indent=2))
        print(f"mythos skill install: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(
            f"installed mythos skill for {args.host} in {result.destination} "
            f"({len(result.written)} written, {len(result.unchanged)} unchanged)"
        )
    return 0
