"""`mythos model plan PRESET --devices N --device-memory GB ...`: argument parsing and printing for the plan."""

from __future__ import annotations

import argparse
import json
import sys


def plan_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mythos model plan",
        description="memory per device and throughput of training a preset with FSDP2 on N devices "
        "(computed on the meta device: nothing is allocated)",
    )
    parser.add_argument("target", help="preset name (see `mythos model list`) or checkpoint directory")
    parser.add_argument("--devices", type=int, required=True, help="number of devices (FSDP2 world size)")
    parser.add_argument("--device-memory", type=float, required=True, help="memory per device in GB")
    parser.add_argument("--expert-parallel", type=int, default=1, help="expert-parallel degree E")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sample (default: 4096)")
    parser.add_argument("--batch", type=int, default=1, help="micro batch per device")
    parser.add_argument("--loops", type=int, default=None, help="loop depth (default: max_loop_iters)")
    parser.add_argument("--grad-loops", type=int, default=None, help="loops backpropagated when truncated")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    args = parser.parse_args(argv)

    from .cli import resolve_config
    from .config import ConfigError
    from .plan import PlanError, format_plan, make_plan

    try:
        cfg, label, _ = resolve_config(args.target)
        seq_len = args.seq_len if args.seq_len is not None else min(4096, cfg.max_seq_len)
        plan = make_plan(
            cfg,
            label=label,
            devices=args.devices,
            device_memory_gb=args.device_memory,
            expert_parallel=args.expert_parallel,
            seq_len=seq_len,
            batch=args.batch,
            loops=args.loops,
            grad_loops=args.grad_loops,
            mfu=args.mfu,
            peak_tflops=args.peak_tflops,
        )
    except (PlanError, ConfigError, ValueError, OSError) as error:
        print(f"mythos: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, sort_keys=True))
    else:
        print(format_plan(plan))
    return 0
