"""The ``mythos`` command line: a thin dispatcher that hands each command to its wing.

Wings are imported only when their command runs, so ``mythos packet …`` starts without loading torch.
Each entry names ``module:function``; the function takes the remaining argv and returns an exit status.
"""

from __future__ import annotations

import importlib
import os
import sys

# command -> (target "module:function", one-line summary). Order is the order of `mythos --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "mythos.train.cli:demo_main",
        "train a small looped model on multi-hop tasks and plot depth vs accuracy",
    ),
    "train": (
        "mythos.train.cli:train_main",
        "train a Recurrent-Depth Transformer (single process or torchrun)",
    ),
    "eval": (
        "mythos.train.cli:eval_main",
        "evaluate a checkpoint per test-time depth (bits per byte on text, accuracy grid on tasks)",
    ),
    "study": (
        "mythos.train.cli:study_main",
        "`mythos study depth`: looped vs dense baselines on real text (bits per byte per depth)",
    ),
    "plot": ("mythos.train.cli:plot_main", "draw PNG charts from a training run's telemetry"),
    "model": ("mythos.model.cli:model_main", "inspect model presets (`mythos model info PRESET`)"),
    "doctor": (
        "mythos.model.cli:doctor_main",
        "check a checkpoint or preset against the eight RDT invariants",
    ),
    "convert": (
        "mythos.model.cli:convert_main",
        "convert an open-mythos state dict + config into a mythos checkpoint",
    ),
    "export": ("mythos.hf.cli:export_main", "export a checkpoint as a Hugging Face directory (`--hf OUT`)"),
    "import": ("mythos.hf.cli:import_main", "load a `mythos export --hf` directory back as a checkpoint"),
    "generate": ("mythos.infer.cli:generate_main", "generate text from a checkpoint or preset"),
    "serve": ("mythos.infer.cli:serve_main", "serve a checkpoint over an OpenAI-compatible HTTP API"),
    "think": (
        "mythos.reason.cli:think_main",
        "reason about a question with Prelude -> lens rounds -> Coda over an LLM",
    ),
    "calibrate": (
        "mythos.reason.cli:calibrate_main",
        "run the calibration suite and score its structural checks",
    ),
    "bench": (
        "mythos.reason.bench_cli:bench_main",
        "accuracy of mythos modes vs direct/step-by-step/self-consistency at one token budget",
    ),
    "packet": ("mythos.packets.cli:packet_main", "packet compiler: init, ingest, compile, gate, ready"),
    "skill": (
        "mythos.skills.cli:skill_main",
        "install the mythos contract/command for an agent host (claude, codex)",
    ),
}


# optional extras (pyproject.toml) -> the top-level modules each one installs
EXTRAS: dict[str, tuple[str, ...]] = {
    "model": ("torch", "numpy", "safetensors"),
    "train": ("tokenizers", "pyarrow", "tqdm", "matplotlib"),
    "reason": ("openai", "anthropic", "httpx"),
    "serve": ("tokenizers",),
    "hf": ("transformers", "tokenizers"),
    "eval": ("lm_eval", "accelerate"),
}
# command -> the extra its whole job needs (a missing module of that extra names it; others name their own)
COMMAND_EXTRA = {
    "demo": "train",
    "train": "train",
    "eval": "train",
    "study": "train",
    "plot": "train",
    "doctor": "model",
    "convert": "model",
    "generate": "serve",
    "serve": "serve",
    "think": "reason",
    "calibrate": "reason",
    "bench": "reason",
    "export": "hf",
    "import": "hf",
}
_INCLUDES = {"train": ("model",), "serve": ("model",), "hf": ("model",), "eval": ("hf", "model")}


def _extra_modules(extra: str) -> set[str]:
    mods = set(EXTRAS.get(extra, ()))
    for inner in _INCLUDES.get(extra, ()):
        mods |= _extra_modules(inner)
    return mods


def missing_extra(command: str, exc: ModuleNotFoundError) -> str | None:
    """The extra to install for a module that failed to import, or None if no extra provides it."""
    top = (exc.name or "").split(".")[0]
    if not top:
        return None
    preferred = COMMAND_EXTRA.get(command)
    if preferred and top in _extra_modules(preferred):
        return preferred
    return next((extra for extra, mods in EXTRAS.items() if top in mods), None)


def _usage() -> str:
    from mythos import __version__

    width = max(map(len, COMMANDS))
    lines = [f"mythos {__version__} — recurrent-depth reasoning", "", "usage: mythos COMMAND [ARGS...]", ""]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `mythos COMMAND --help` for a command's options."]
    return "\n".join(lines)


def resolve(command: str):
    """Import and return the function that runs ``command``."""
    target, _ = COMMANDS[command]
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from mythos import __version__

        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"mythos: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        status = resolve(command)(rest)
    except ModuleNotFoundError as exc:
        extra = missing_extra(command, exc)
        if extra is None:
            raise
        top = (exc.name or "").split(".")[0]
        print(
            f"mythos {command}: needs {top!r}, which is not installed: pip install 'mythos[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("mythos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mythos ... | head`: the reader left; stop quietly instead of a traceback
        os.dup2(
            os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno()
        )  # the exit-time flush must not fail too
        return 141
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
