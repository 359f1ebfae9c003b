"""Offline lm-evaluation-harness tasks for an exported model: held-out text perplexity and a multiple-choice set.

``mythos export --hf OUT`` writes them to ``OUT/lm_eval/`` (YAML tasks over local JSONL files), so

    lm_eval --model hf --model_args pretrained=OUT,trust_remote_code=True \
        --include_path OUT/lm_eval --tasks mythos_heldout,mythos_binding

runs with no network. ``mythos_heldout`` is rolling log-likelihood (word/byte perplexity, bits per byte) over
held-out text: the documents of ``--heldout`` when given, else a small text this package ships. ``mythos_binding``
renders programs of the synthetic variable-binding task (mythos.train.tasks) as text, asks for the last variable's
value and scores the ten digits by log-likelihood, so its chance level is 0.1.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

TASK_DIR = "lm_eval"
HELDOUT_TASK = "mythos_heldout"
MC_TASK = "mythos_binding"
SHIPPED_HELDOUT = Path(__file__).with_name("heldout.jsonl")


def _name(i: int) -> str:
    """Variable name of index i: a..z, then aa, ab, ..."""
    letters = string.ascii_lowercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def binding_items(n: int = 100, n_statements: int = 8, seed: int = 0) -> list[dict]:
    """``n`` multiple-choice items: a binding program as text, the last variable's digit as the answer."""
    import numpy as np

    from mythos.train.tasks import make_task

    task = make_task("binding", n_statements=n_statements)
    batch = task.sample(n, np.random.default_rng(seed), max_hops=min(4, task.max_depth))
    items = []
    for tokens, targets, depth in zip(batch.inputs, batch.targets, batch.depth, strict=True):
        pairs = [(int(tokens[i]), int(tokens[i + 1])) for i in range(1, len(tokens), 2)]

        def text(tok: int) -> str:
            if tok >= task.name_base:
                return _name(tok - task.name_base)
            return str(tok - task.value_base)

        program = "; ".join(f"{text(var)}={text(src)}" for var, src in pairs)
        last_var = text(pairs[-1][0])
        answer = int(targets[-1]) - task.value_base
        items.append(
            {
                "question": f"{program}. {last_var} =",
                "choices": [str(d) for d in range(task.n_values)],
                "label": answer,
                "hops": int(depth[-1]),
            }
        )
    return items


def _heldout_docs(heldout: str | Path | None, limit: int) -> list[dict]:
    if heldout is None:
        return [json.loads(line) for line in SHIPPED_HELDOUT.read_text(encoding="utf-8").splitlines() if line]
    from mythos.train.data import iter_documents

    docs = []
    for doc in iter_documents(str(heldout)):
        if doc.strip():
            docs.append({"text": doc.strip()})
        if len(docs) >= limit:
            break
    if not docs:
        raise ValueError(f"--heldout {heldout}: no documents found")
    return docs


def _yaml(data: dict, indent: int = 0) -> str:
    """Just enough YAML for these task files (lm-eval reads YAML; PyYAML is not a mythos dependency)."""
    lines = []
    for key, value in data.items():
        pad = " " * indent
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(_yaml(value, indent + 2))
        elif isinstance(value, list):
            lines.append(f"{pad}{key}:")
            for item in value:
                body = _yaml(item, indent + 4).lstrip()
                lines.append(f"{pad}  - {body}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(value)}")
    return "\n".join(lines)


def write_tasks(directory: str | Path, final_dir: str | Path, heldout: str | Path | None = None) -> list[str]:
    """Write the task YAMLs and JSONLs into ``directory``; the YAMLs name the data files under ``final_dir``
    (where ``directory`` will live after an atomic rename). Returns the task names."""
    out, final = Path(directory), Path(final_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    docs = _heldout_docs(heldout, limit=500)
    (out / "heldout.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    items = binding_items()
    (out / "binding.jsonl").write_text("".join(json.dumps(d) + "\n" for d in items), encoding="utf-8")
    common = {"dataset_path": "json", "test_split": "train"}
    heldout_task = {
        "task": HELDOUT_TASK,
        **common,
        "dataset_kwargs": {"data_files": str(final / "heldout.jsonl")},
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [
            {"metric": "word_perplexity", "higher_is_better": False},
            {"metric": "byte_perplexity", "higher_is_better": False},
            {"metric": "bits_per_byte", "higher_is_better": False},
        ],
        "metadata": {"version": 1.0},
    }
    mc_task = {
        "task": MC_TASK,
        **common,
        "dataset_kwargs": {"data_files": str(final / "binding.jsonl")},
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    for task in (heldout_task, mc_task):
        (out / f"{task['task']}.yaml").write_text(_yaml(task) + "\n", encoding="utf-8")
    return [HELDOUT_TASK, MC_TASK]
