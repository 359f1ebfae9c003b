"""`mythos model info|list` and `mythos convert`: look at a model's size, and bring in a reference checkpoint.

``info`` reads only a config (a preset, or a checkpoint's config.json plus its safetensors header), so the
1T preset is described instantly; ``convert`` hands a saved open-mythos state dict to the model wing's
converter and writes a mythos checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mythos import envelope

from .params import (
    buffer_elements,
    cached_layers,
    count_params,
    human,
    kv_cache_bytes_per_token,
    kv_cache_elements_per_layer,
)


def _fail(message: str, as_json: bool = False, *, field: str | None = None, code: int = 2) -> int:
    """One line on stderr (and, with --json, the failure envelope on stdout); returns the exit code."""
    if as_json:
        print(envelope.dumps(envelope.failure(message, field=field)))
    print(f"mythos: {message}", file=sys.stderr)
    return code


# ---------------------------------------------------------------------------------------------- resolve


def resolve_config(target: str) -> tuple[Any, str, Path | None]:
    """A preset name or a checkpoint directory (or its config.json, or a run folder) -> (config, label, checkpoint).

    Goes through the one resolver (``mythos.model.locate.resolve``); notes about damaged checkpoints it skipped
    are printed to stderr here, at the CLI layer.
    """
    from .locate import model_config, resolve

    ref = resolve(target)
    for note in ref.notes:
        print(f"mythos: warning: {note}", file=sys.stderr)
    return model_config(ref), ref.label, ref.checkpoint


def checkpoint_tensor_elements(checkpoint_dir: Path) -> int | None:
    """Tensor elements stored in a checkpoint's safetensors files, read from their headers only (no weights)."""
    from .locate import safetensors_problem

    files = sorted(checkpoint_dir.glob("*.safetensors"))
    if not files or any(safetensors_problem(file) for file in files):
        return None
    total = 0
    for file in files:
        with open(file, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for size in meta["shape"]:
                count *= size
            total += count
    return total


# ---------------------------------------------------------------------------------------------- info


def model_report(cfg: Any, n_loops: int | None = None) -> dict[str, Any]:
    """Everything `model info` prints, as plain data (the --json form)."""
    counts = count_params(cfg, n_loops)
    loops = counts.n_loops
    kv: dict[str, dict[str, int]] = {}
    layouts: list[tuple[str, Any, bool]] = []
    if cfg.attn_type == "mla":
        layouts += [("mla", cfg, False), ("mla (reference layout)", cfg, True)]
        gqa_cfg = _as_gqa(cfg)
        if gqa_cfg is not None:
            layouts.append(("gqa (same dims)", gqa_cfg, False))
    else:
        layouts.append(("gqa", cfg, False))
    for label, layout_cfg, ref in layouts:
        kv[label] = {
            "elements_per_layer": kv_cache_elements_per_layer(layout_cfg, reference_layout=ref),
            **{
                f"bytes_{dtype}": kv_cache_bytes_per_token(layout_cfg, dtype, loops, reference_layout=ref)
                for dtype in ("float32", "bfloat16")
            },
        }
    return {
        "config": {
            key: getattr(cfg, key)
            for key in (
                "attn_type",
                "vocab_size",
                "dim",
                "n_heads",
                "n_kv_heads",
                "max_seq_len",
                "max_loop_iters",
                "prelude_layers",
                "coda_layers",
                "n_experts",
                "n_shared_experts",
                "n_experts_per_tok",
                "expert_dim",
                "lora_rank",
                "loop_dim",
                "act",
                "act_threshold",
                "reference_compat",
            )
            if hasattr(cfg, key)
        },
        "n_loops": loops,
        "components": counts.components,
        "params": {
            "total": counts.total,
            "active_per_token": counts.active,
            "touched_at_depth": counts.touched,
            "applied_per_token_at_depth": counts.applied,
        },
        "buffer_elements": buffer_elements(cfg),
        "kv_cache": {"cached_layers": cached_layers(cfg, loops), "per_token": kv},
    }


def _as_gqa(cfg: Any) -> Any | None:
    try:
        return cfg.replace(attn_type="gqa")
    except (ValueError, AttributeError):
        return None


def format_report(label: str, report: dict[str, Any]) -> str:
    cfg, params, loops = report["config"], report["params"], report["n_loops"]
    lines = [
        f"{label}: {cfg['attn_type'].upper()}, dim {cfg['dim']}, {cfg['n_heads']} heads, vocab {cfg['vocab_size']}, "
        f"{cfg['prelude_layers']} prelude + 1 looped x{cfg['max_loop_iters']} + {cfg['coda_layers']} coda, "
        f"MoE {cfg['n_experts']} experts top-{cfg['n_experts_per_tok']} + {cfg['n_shared_experts']} shared "
        f"(expert_dim {cfg['expert_dim']}), loop_dim {cfg.get('loop_dim')}",
        "",
        f"{'component':<32}{'params':>16}{'':>10}",
    ]
    for name, count in report["components"].items():
        lines.append(f"{name:<32}{count:>16,}{human(count):>10}")
    lines += [
        "",
        f"{'total':<32}{params['total']:>16,}{human(params['total']):>10}",
        f"{'active per token (1 loop)':<32}{params['active_per_token']:>16,}{human(params['active_per_token']):>10}",
        f"{f'touched at depth {loops}':<32}{params['touched_at_depth']:>16,}{human(params['touched_at_depth']):>10}",
        f"{f'applied per token at depth {loops}':<32}{params['applied_per_token_at_depth']:>16,}"
        f"{human(params['applied_per_token_at_depth']):>10}",
        "",
        f"KV cache per token at depth {loops} ({report['kv_cache']['cached_layers']} cached layers):",
        f"{'layout':<28}{'elems/layer':>12}{'fp32 bytes':>14}{'bf16 bytes':>14}",
    ]
    for layout, row in report["kv_cache"]["per_token"].items():
        lines.append(
            f"{layout:<28}{row['elements_per_layer']:>12,}{row['bytes_float32']:>14,}{row['bytes_bfloat16']:>14,}"
        )
    if "checkpoint_tensor_elements" in report:
        stored = report["checkpoint_tensor_elements"]
        expected = params["total"] + report["buffer_elements"]
        verdict = "matches" if stored == expected else "DIFFERS from"
        lines += ["", f"checkpoint tensors: {stored:,} elements ({verdict} parameters + router-bias buffer)"]
    if report.get("checkpoint_problem"):
        lines += ["", f"checkpoint tensors: unreadable: {report['checkpoint_problem']}"]
    lines += [
        "",
        "active = all parameters but the routed experts a token is not sent to; touched = distinct parameters one",
        "token can read over all loops (up to min(E, T*k) experts); applied = parameter uses per token (~FLOPs/2).",
    ]
    return "\n".join(lines)


def _info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mythos model info", description="parameter counts and KV-cache size"
    )
    parser.add_argument("target", help="preset name (see `mythos model list`) or checkpoint directory")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--loops", type=int, default=None, help="loop depth T (default: the config's max_loop_iters)"
    )
    args = parser.parse_args(argv)
    try:
        cfg, label, checkpoint_dir = resolve_config(args.target)
        report = model_report(cfg, args.loops)
    except (ValueError, OSError) as error:
        return _fail(str(error), args.json, field="target")
    if checkpoint_dir is not None:
        from .locate import WEIGHTS_NAME, safetensors_problem

        stored = checkpoint_tensor_elements(checkpoint_dir)
        if stored is not None:
            report["checkpoint_tensor_elements"] = stored
        elif (checkpoint_dir / WEIGHTS_NAME).is_file():
            report["checkpoint_problem"] = safetensors_problem(checkpoint_dir / WEIGHTS_NAME)
    if args.json:
        print(envelope.dumps(envelope.success(target=label, **report), sort_keys=True))
    else:
        print(format_report(label, report))
    return 0


def _list(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mythos model list", description="list the named presets")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from .presets import PRESETS

    rows = []
    for name, factory in PRESETS.items():
        cfg = factory()
        counts = count_params(cfg)
        rows.append(
            {
                "name": name,
                "attn_type": cfg.attn_type,
                "dim": cfg.dim,
                "loops": cfg.max_loop_iters,
                "experts": cfg.n_experts,
                "total": counts.total,
                "active_per_token": counts.active,
            }
        )
    if args.json:
        print(envelope.dumps(envelope.success(presets=rows), sort_keys=True))
        return 0
    print(f"{'preset':<11}{'attn':<6}{'dim':>7}{'loops':>7}{'experts':>9}{'total':>10}{'active':>10}")
    for row in rows:
        print(
            f"{row['name']:<11}{row['attn_type']:<6}{row['dim']:>7}{row['loops']:>7}{row['experts']:>9}"
            f"{human(row['total']):>10}{human(row['active_per_token']):>10}"
        )
    return 0


def model_main(argv: list[str]) -> int:
    """`mythos model info|list`."""
    usage = "usage: mythos model {info PRESET|CHECKPOINT [--json] [--loops N] | list [--json]}"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    if sub == "info":
        return _info(rest)
    if sub == "list":
        return _list(rest)
    return _fail(f"unknown model subcommand {sub!r}\n{usage}")


# ---------------------------------------------------------------------------------------------- convert


def convert_main(argv: list[str]) -> int:
    """`mythos convert STATE_DICT CONFIG_JSON OUT_DIR`: reference weights -> a mythos checkpoint."""
    parser = argparse.ArgumentParser(
        prog="mythos convert",
        description="convert an open-mythos state dict and its config (JSON of reference MythosConfig fields) "
        "into a mythos checkpoint (model.safetensors + config.json) with reference-compatible semantics",
    )
    parser.add_argument(
        "state_dict", type=Path, help="reference state dict (.pt/.pth via torch.save, or .safetensors)"
    )
    parser.add_argument("config_json", type=Path, help="JSON object of the reference MythosConfig fields")
    parser.add_argument("out_dir", type=Path, help="directory to write the mythos checkpoint into")
    args = parser.parse_args(argv)
    for name in ("state_dict", "config_json"):
        if not getattr(args, name).is_file():
            return _fail(f"{name} {getattr(args, name)} does not exist or is not a file")
    try:
        config = json.loads(args.config_json.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return _fail(f"config_json {args.config_json} is not valid JSON: {error}")
    if not isinstance(config, dict):
        return _fail(f"config_json {args.config_json} must hold a JSON object of reference config fields")

    from .checkpoint import read_config
    from .reference import convert_open_mythos

    try:
        out = convert_open_mythos(args.state_dict, args.config_json, args.out_dir)
    except Exception as error:  # noqa: BLE001 - a corrupt or mismatched input file: one line, never a traceback
        return _fail(f"conversion failed: {type(error).__name__}: {str(error).strip()[:400]}")
    cfg = read_config(out)
    total = count_params(cfg).total
    print(
        f"wrote {out}: {total:,} parameters ({human(total)}), attn_type={cfg.attn_type}, reference_compat=True"
    )
    return 0


# ---------------------------------------------------------------------------------------------- doctor


def load_doctor_target(target: str, max_params: int | None = None, seed: int = 0) -> tuple[Any, str]:
    """A checkpoint (loaded) or a preset (built with a fixed seed, if small enough to probe) -> (model, label)."""
    import torch

    from .doctor import DEFAULT_MAX_PARAMS

    max_params = DEFAULT_MAX_PARAMS if max_params is None else max_params
    cfg, label, checkpoint_dir = resolve_config(target)
    if checkpoint_dir is not None:
        from .checkpoint import load_checkpoint

        return load_checkpoint(checkpoint_dir), label
    total = count_params(cfg).total
    if total > max_params:
        raise ValueError(
            f"{label} has {human(total)} parameters ({total * 4 / 2**30:.1f} GiB in fp32); the doctor probes a "
            f"real forward, so it builds at most {human(max_params)} (--max-params); use `mythos model info "
            f"{target}` for sizes"
        )
    from .model import Mythos

    torch.manual_seed(seed)
    return Mythos(cfg), label


def doctor_main(argv: list[str]) -> int:
    """`mythos doctor CHECKPOINT_OR_PRESET [--json] [--probe-tokens N] [--strict]`.

    Exit 0 healthy, 1 a violation (warnings too with --strict) or the probe could not run (out of memory),
    2 bad input (no such checkpoint or preset, a damaged checkpoint, a bad option).
    """
    from .doctor import (
        DEFAULT_MAX_PARAMS,
        INVARIANTS,
        DoctorResourceError,
        format_findings,
        has_violation,
        run_doctor,
    )

    parser = argparse.ArgumentParser(
        prog="mythos doctor",
        description="check a checkpoint or preset against the eight Recurrent-Depth Transformer invariants "
        "(non-finite weights first); exit 1 on any violation (warnings too with --strict) or when the probe "
        "cannot run, 2 on bad input",
    )
    parser.add_argument("target", help="checkpoint directory, training run folder or preset name")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument(
        "--probe-tokens", type=int, default=256, help="tokens in the random probe batch (default 256)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the probe (and a preset's weights)")
    parser.add_argument("--strict", action="store_true", help="also fail on warnings (symptoms)")
    parser.add_argument("--max-params", type=int, default=DEFAULT_MAX_PARAMS, help="largest preset to build")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="INVARIANT",
        help="an invariant the model breaks on purpose (repeatable): reported as a warning, not a failure; "
        f"one of {', '.join(INVARIANTS)}",
    )
    args = parser.parse_args(argv)

    def fail(message: str, field: str | None, code: int = 2) -> int:
        if args.json:
            print(envelope.dumps(envelope.failure(message, field=field)))
        print(f"mythos doctor: {message}", file=sys.stderr)
        return code

    if args.probe_tokens < 2:
        return fail(f"--probe-tokens={args.probe_tokens} must be >= 2", "probe_tokens")
    unknown = sorted(set(args.allow) - set(INVARIANTS))
    if unknown:
        return fail(f"--allow {unknown[0]} names no invariant; valid: {', '.join(INVARIANTS)}", "allow")
    try:
        model, label = load_doctor_target(args.target, args.max_params, args.seed)
    except (ValueError, OSError) as error:
        return fail(str(error), "target")
    try:
        findings = run_doctor(model, args.probe_tokens, args.seed, allow=args.allow)
    except DoctorResourceError as error:
        return fail(f"error: {error}", None, 1)
    failed = has_violation(findings, args.strict)
    if args.json:
        from dataclasses import asdict

        payload = {"target": label, "findings": [asdict(f) for f in findings]}
        if failed:  # the work ran and found a violation: exit 1, so ok is false; the findings say which
            message = "a finding fails the check (a violation, or a warning under --strict)"
            print(envelope.dumps(envelope.failure(message, field="target", **payload)))
            print(f"mythos doctor: {message}", file=sys.stderr)
        else:
            print(envelope.dumps(envelope.success(**payload)))
    else:
        print(f"mythos doctor: {label}")
        print(format_findings(findings))
    return 1 if failed else 0
