"""The packet compiler: subagent output in, a deterministic, hash-provenanced next-pass packet out.

Standard library only — `mythos packet …` must start without torch. See docs/packets.md.
"""

from pathlib import Path

from .compiler import compile_run
from .errors import PacketError
from .gate import GateResult, gate_run
from .ingest import IngestResult, ingest_file, ingest_text
from .runs import init_run


def record_synthesis(run_dir: str | Path, text: str, *, root: str | Path | None = None) -> dict:
    """Record Prime's synthesis, advance the pass and recompile (``compile_run(record_synthesis=text)``)."""
    return compile_run(run_dir, root=root, record_synthesis=text)


def run_readiness(*, verbose: bool = False, say=print) -> bool:
    """End-to-end self-test in a temporary directory (what `mythos packet ready` runs)."""
    from .readiness import run_readiness as _run

    return _run(verbose=verbose, say=say)


__all__ = [
    "GateResult",
    "IngestResult",
    "PacketError",
    "compile_run",
    "gate_run",
    "ingest_file",
    "ingest_text",
    "init_run",
    "record_synthesis",
    "run_readiness",
]
