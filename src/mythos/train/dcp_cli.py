"""`mythos model unshard SHARDED_CHECKPOINT OUT_DIR`: a sharded (DCP) checkpoint -> model.safetensors + config.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def unshard_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mythos model unshard",
        description="convert a sharded checkpoint (RUN/sharded/step_N, written by `mythos train "
        "--sharded-checkpoints`) into the single-file form (the whole model is loaded in this process: "
        "for models that fit in its memory)",
    )
    parser.add_argument(
        "sharded", type=Path, help="sharded checkpoint folder, or a run folder (-> its latest)"
    )
    parser.add_argument("out_dir", type=Path, help="directory to write model.safetensors + config.json into")
    args = parser.parse_args(argv)
    from .dcp import is_sharded_checkpoint, latest_sharded, to_single_file

    source = args.sharded
    if not is_sharded_checkpoint(source):
        source = latest_sharded(source) or source
    try:
        out = to_single_file(source, args.out_dir)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"mythos: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} from {source}")
    return 0
