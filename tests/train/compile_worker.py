"""What torchrun starts for the distributed ``--compile`` test: ``mythos train`` with the compile backend set to
``aot_eager`` (dynamo + AOTAutograd, no inductor code generation, which takes minutes per rank on this CPU).
Each rank writes how many graphs dynamo compiled to ``OUT/compiled_graphs_rank<R>.json``."""

import json
import os
import sys
from pathlib import Path

from torch._dynamo.utils import counters

from mythos.train import compile as compile_mod
from mythos.train.cli import train_main

if __name__ == "__main__":
    compile_mod.BACKEND = "aot_eager"
    code = train_main(sys.argv[1:])
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    rank = os.environ.get("RANK", "0")
    (out / f"compiled_graphs_rank{rank}.json").write_text(json.dumps(counters["stats"]["unique_graphs"]))
    sys.exit(code)
