"""The packet compiler: subagent output in, a deterministic, hash-provenanced next-pass packet out.

Standard library only — `mythos packet …` must start without torch. See docs/packets.md.
"""

from .compiler import compile_run
from .errors import PacketError

__all__ = ["PacketError", "compile_run"]
