"""The model card (README.md) of an exported directory: architecture, config, training data, evaluation.

Facts come from the files a run leaves (``train_config.json`` beside the checkpoint, the ``step_N`` folder
name, an evaluation JSON when there is one); nothing is guessed when a file is missing, the card says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVAL_NAMES = ("eval.json", "eval_results.json")


def run_facts(ckpt: Path, eval_file: str | None = None) -> dict[str, Any]:
    """What the run says about itself: its training config, the step, and an evaluation table if found."""
    facts: dict[str, Any] = {"checkpoint": str(ckpt)}
    train_cfg = ckpt / "train_config.json"
    if train_cfg.is_file():
        facts["train"] = json.loads(train_cfg.read_text(encoding="utf-8"))
    if ckpt.name.startswith("step_") and ckpt.name[5:].isdigit():
        facts["step"] = int(ckpt.name[5:])
    candidates = [Path(eval_file)] if eval_file else []
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    for folder in (ckpt, run_dir):
        if folder is not None:
            candidates += [folder / name for name in EVAL_NAMES]
    for path in candidates:
        if path.is_file():
            facts["eval"] = json.loads(path.read_text(encoding="utf-8"))
            facts["eval_source"] = path.name
            break
    if eval_file and "eval" not in facts:
        raise FileNotFoundError(f"--eval {eval_file}: no such file")
    return facts


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| field | value |", "|---|---|"]
    lines += [f"| `{k}` | `{v}` |" for k, v in rows]
    return "\n".join(lines)


def _eval_table(data: Any) -> str:
    if isinstance(data, dict) and {"lengths", "loops", "accuracy"} <= set(data):  # `mythos eval --json` grid
        head = "| chain length | " + " | ".join(f"{n} loops" for n in data["loops"]) + " |"
        lines = [head, "|---" * (len(data["loops"]) + 1) + "|"]
        for length, row in zip(data["lengths"], data["accuracy"], strict=False):
            lines.append(f"| {length} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
        return f"Accuracy on the synthetic task `{data.get('task')}`:\n\n" + "\n".join(lines)
    if isinstance(data, dict) and isinstance(data.get("results"), dict):  # lm-eval results JSON
        lines = ["| task | metric | value |", "|---|---|---|"]
        for task, metrics in sorted(data["results"].items()):
            for metric, value in sorted(metrics.items()):
                if isinstance(value, int | float) and not isinstance(value, bool) and metric != "sample_len":
                    lines.append(f"| {task} | {metric} | {value:.4g} |")
        return "\n".join(lines)
    if isinstance(data, dict):
        return _table(sorted(data.items()))
    return f"```\n{json.dumps(data, indent=2)}\n```"


def model_card(model, facts: dict[str, Any], cache_layout: str) -> str:
    cfg = model.cfg
    train = facts.get("train")
    params = model.num_parameters()
    parts = [
        "---",
        "library_name: transformers",
        "tags: [mythos, looped-transformer, recurrent-depth, custom_code]",
        "---",
        "",
        "# mythos Recurrent-Depth Transformer",
        "",
        "Exported by `mythos export --hf`. Load it with only `torch` and `transformers`:",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained(".", trust_remote_code=True)',
        'tok = AutoTokenizer.from_pretrained(".")',
        'ids = tok("Once upon a time", return_tensors="pt").input_ids',
        "out = model.generate(ids, max_new_tokens=20, num_steps=8)  # num_steps: loops per token",
        "```",
        "",
        "`num_steps` sets the loop count (default: the config's `num_steps`); "
        '`exit_criterion="kl:0.01"` (or `delta:0.05`, `argmax:2`) lets each token stop looping early '
        "(models trained with `act=False`).",
        "",
        "## Architecture",
        "",
        f"Embedding -> {cfg.prelude_layers} prelude block(s) -> one MoE block looped up to "
        f"{cfg.max_loop_iters} times (LTI-stable injection, loop-index embedding, depth LoRA, "
        f"{'ACT halting' if cfg.act else 'no ACT halting'}) -> {cfg.coda_layers} coda block(s) -> RMSNorm -> "
        f"head tied to the embedding. {params:,} parameters.",
        "",
        f"- attention: {cfg.attn_type.upper()}, {cfg.n_heads} heads, dim {cfg.dim}",
        f"- experts: {cfg.n_experts} routed (top {cfg.n_experts_per_tok}) + {cfg.n_shared_experts} shared, "
        f"width {cfg.expert_dim}",
        f"- RoPE: interleaved pairs, theta {cfg.rope_theta:g}, rotated width {cfg.rope_dim}",
        f"- KV cache per token and slot: {cache_layout}; one slot per prelude layer, per loop, per coda layer",
        f"- reference_compat: {cfg.reference_compat}",
        f"- tokenizer: {facts.get('tokenizer')}",
        "",
        "## Config",
        "",
        _table([(k, v) for k, v in sorted(cfg.to_dict().items()) if k != "extra"]),
        "",
        "## Training",
        "",
    ]
    if train:
        step = facts.get("step")
        per_step = train.get("batch_size", 0) * train.get("grad_accum", 1) * train.get("seq_len", 0)
        source = train.get("data") or train.get("shards") or (f"synthetic task `{train.get('task')}`")
        parts += [
            f"- data: `{source}`",
            f"- steps: {step if step is not None else 'unknown'} of {train.get('steps')}; loops {train.get('loops')}",
        ]
        if step is not None and per_step:
            parts.append(
                f"- tokens seen: {step * per_step:,} per process "
                f"({train.get('batch_size')} x {train.get('grad_accum', 1)} x {train.get('seq_len')} per step)"
            )
    else:
        parts.append("No train_config.json beside the checkpoint: the training data is not recorded.")
    parts += ["", "## Evaluation", ""]
    if "eval" in facts:
        parts += [f"From `{facts['eval_source']}`:", "", _eval_table(facts["eval"])]
    else:
        parts.append("No evaluation file came with the run (`eval.json`).")
    if facts.get("lm_eval_tasks"):
        parts += [
            "",
            "Offline lm-evaluation-harness tasks ship in `lm_eval/` (held-out text perplexity; a 10-way "
            "multiple-choice set from the synthetic variable-binding task, chance 0.1):",
            "",
            "```",
            "lm_eval --model hf --model_args pretrained=.,trust_remote_code=True --include_path lm_eval "
            f"--tasks {','.join(facts['lm_eval_tasks'])}",
            "```",
        ]
    return "\n".join(parts) + "\n"
