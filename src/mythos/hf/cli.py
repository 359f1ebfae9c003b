"""``mythos export --hf`` and ``mythos import --hf``: argument parsing and messages (the library never prints)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mythos import envelope


def _failed(command: str, exc: Exception, as_json: bool) -> int:
    """Bad input (exit 2): one line on stderr, and the failure envelope on stdout with --json."""
    if as_json:
        print(envelope.dumps(envelope.failure(str(exc))))
    print(f"mythos {command}: {exc}", file=sys.stderr)
    return 2


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mythos export",
        description="Write a checkpoint (or a run folder's latest) as a Hugging Face trust_remote_code directory.",
    )
    p.add_argument(
        "source", metavar="RUN_OR_CHECKPOINT", help="a training run folder or a checkpoint directory"
    )
    p.add_argument(
        "--hf", required=True, metavar="OUT", help="directory to write (loads with torch + transformers)"
    )
    p.add_argument("--force", action="store_true", help="replace OUT if it exists and is not empty")
    p.add_argument(
        "--eval", metavar="JSON", help="evaluation results for the model card (default: eval.json of the run)"
    )
    p.add_argument(
        "--heldout",
        metavar="TEXT",
        help="held-out text (file, folder or .jsonl) for the lm-eval perplexity task (default: a shipped text)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON (see docs/cli.md)")
    args = p.parse_args(argv)
    from .export import ExportError, export_hf

    try:
        out = export_hf(args.source, args.hf, force=args.force, eval_file=args.eval, heldout=args.heldout)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        return _failed("export", exc, args.json)
    if args.json:
        print(envelope.dumps(envelope.success(out=str(out))))
        return 0
    print(f"mythos export: wrote {out}")
    print(f"  load: AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)")
    print(
        f"  eval: lm_eval --model hf --model_args pretrained={out},trust_remote_code=True "
        f"--include_path {out}/lm_eval --tasks mythos_heldout,mythos_binding"
    )
    return 0


def import_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mythos import",
        description="Load a directory written by `mythos export --hf` back as a mythos checkpoint.",
    )
    p.add_argument("--hf", required=True, metavar="DIR", help="the exported Hugging Face directory")
    p.add_argument("--out", metavar="CHECKPOINT", help="checkpoint directory to write (default: DIR-mythos)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (see docs/cli.md)")
    args = p.parse_args(argv)
    from .export import ExportError, import_hf

    out = Path(args.out) if args.out else Path(str(Path(args.hf)).rstrip("/") + "-mythos")
    try:
        model = import_hf(args.hf, out)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        return _failed("import", exc, args.json)
    if args.json:
        print(envelope.dumps(envelope.success(out=str(out), parameters=model.num_parameters())))
        return 0
    print(f"mythos import: wrote {out} ({model.num_parameters():,} parameters)")
    return 0
