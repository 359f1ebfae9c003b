"""Run the mythos CLI with some top-level modules made unimportable, as if their extra were not installed.

usage: python blocked_cli.py MOD1,MOD2,... -- mythos arguments...
"""

import importlib.abc
import importlib.machinery
import sys


class Missing(importlib.abc.Loader):
    """Importing the module fails exactly as an absent one does (ModuleNotFoundError with its name)."""

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

    def exec_module(self, module):  # never reached
        raise AssertionError


class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(name, Missing())
        return None


if __name__ == "__main__":
    blocked = set(filter(None, sys.argv[1].split(",")))
    sys.meta_path.insert(0, Blocker(blocked))
    from mythos.cli import main

    raise SystemExit(main(sys.argv[3:]))
