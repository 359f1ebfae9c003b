"""The one results file per benchmark: what a run printed, saved to benchmarks/results/<name>.md for docs to link.

A benchmark calls ``add_results_flag(parser, name)`` before parsing, ``start(args)`` after, and ``finish()`` when
it is done: the file is written (atomically) only after a run that finished, with the command, the date, the
machine and its load average, so a reader knows what the numbers are from. ``--quick`` runs write nothing unless
``--results PATH`` is given (a smoke run must not replace a full run's numbers).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from mythos.fsutil import atomic_write

RESULTS = Path(__file__).resolve().parent / "results"

_state: dict = {}


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def add_results_flag(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--results",
        metavar="PATH",
        default=None,
        help=f"write what this run prints to PATH (default: benchmarks/results/{name}.md; --quick runs write "
        "nothing unless PATH is given; 'none' writes nothing)",
    )
    parser.set_defaults(results_name=name)


def start(args: argparse.Namespace) -> None:
    """Start recording stdout (it is still printed) if this run writes a results file."""
    path = args.results
    if path is None and not getattr(args, "quick", False):
        path = RESULTS / f"{args.results_name}.md"
    if path is None or str(path) == "none":
        return
    buffer = io.StringIO()
    _state.update(path=Path(path), buffer=buffer, stdout=sys.stdout, load=os.getloadavg()[0], t0=time.time())
    _state["name"] = args.results_name
    sys.stdout = _Tee(sys.stdout, buffer)


def finish() -> None:
    """Write the results file of a run that finished (nothing if ``start`` did not record)."""
    if not _state:
        return
    sys.stdout = _state["stdout"]
    torch = sys.modules.get("torch")
    machine = f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs"
    if torch is not None:
        machine += f", torch {torch.__version__}, {torch.get_num_threads()} threads"
    command = "python benchmarks/" + _state["name"] + ".py " + shlex.join(sys.argv[1:])
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(_state["t0"]))
    text = (
        f"# benchmarks/{_state['name']}.py\n\n"
        f"Written by `{command.strip()}` on {started} ({machine}; 1-minute load average "
        f"{_state['load']:.1f} before, {os.getloadavg()[0]:.1f} after). Re-run the command to refresh it.\n\n"
        "```text\n" + _state["buffer"].getvalue().rstrip("\n") + "\n```\n"
    )
    atomic_write(_state["path"], text)
    print(f"wrote {_state['path']}")
    _state.clear()
