"""``mythos export --hf`` / ``mythos import --hf``: a mythos checkpoint as a Hugging Face trust_remote_code directory.

One source of truth for the math: the export copies mythos's own model modules (``mythos/model/model.py``,
``exits.py`` and every module they import relatively) into the directory as ``mythos_<name>.py``, rewriting only
the relative import names, next to ``modeling_mythos.py`` (the transformers wrapper). So the exported model
computes exactly what mythos computes, and a change to the model reaches the next export by itself. A module
that imports ``mythos`` absolutely cannot be shipped and stops the export with a message naming it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mythos.fsutil import atomic_copy, replace_dir, temp_dir_beside

REMOTE_DIR = Path(__file__).with_name("remote")
MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
ROOT_MODULES = ("model", "exits")  # everything the wrapper imports from mythos.model, plus their imports
PREFIX = "mythos_"
WEIGHT_PREFIX = "model."  # MythosForCausalLM keeps the mythos module as ``self.model``
ROPE_CONVENTION = (
    "interleaved"  # mythos/model/rope.py: channels 2i and 2i+1 rotate together (the reference's)
)
EXPORT_FORMAT = "mythos-hf-v1"
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")

_RELATIVE = re.compile(r"^(\s*from\s+)\.(\w+)(\s+import\b)", re.MULTILINE)
_BARE_RELATIVE = re.compile(r"^\s*from\s+\.+\s+import\b|^\s*from\s+\.\.", re.MULTILINE)
_ABSOLUTE = re.compile(r"^\s*(?:from|import)\s+mythos\b", re.MULTILINE)


class ExportError(ValueError):
    """The source cannot be exported or imported as asked; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------- model code
def module_closure(roots: tuple[str, ...] = ROOT_MODULES, model_dir: Path = MODEL_DIR) -> list[str]:
    """Names of the mythos.model modules the roots import relatively, transitively (sorted)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = model_dir / f"{name}.py"
        if not path.is_file():
            raise ExportError(f"mythos.model.{name} is imported by the model but {path} does not exist")
        text = path.read_text(encoding="utf-8")
        if _ABSOLUTE.search(text) or _BARE_RELATIVE.search(text):
            raise ExportError(
                f"{path} imports outside mythos.model (an absolute `mythos` import or `from ..`): the exported "
                "directory must load without mythos, so the model's modules may import only each other"
            )
        seen.add(name)
        todo.extend(_relative_names(text))
    return sorted(seen)


def _relative_names(text: str) -> list[str]:
    return [m.group(2) for m in _RELATIVE.finditer(text)]


def shipped_source(name: str, model_dir: Path = MODEL_DIR) -> str:
    """The text of ``mythos_<name>.py`` in an export: the module's source, relative imports prefixed."""
    text = (model_dir / f"{name}.py").read_text(encoding="utf-8")
    return _RELATIVE.sub(lambda m: f"{m.group(1)}.{PREFIX}{m.group(2)}{m.group(3)}", text)


def code_files() -> dict[str, str]:
    """Every Python file of an export: file name -> text."""
    files = {f"{PREFIX}{name}.py": shipped_source(name) for name in module_closure()}
    for name in ("configuration_mythos.py", "modeling_mythos.py"):
        files[name] = (REMOTE_DIR / name).read_text(encoding="utf-8")
    return files


# ---------------------------------------------------------------------------------------------- tokenizer
def byte_tokenizer_json() -> str:
    """A tokenizer.json mapping UTF-8 byte b to id b (mythos's byte fallback for a model without one)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel's byte -> printable-character table (GPT-2's): bytes that print stay, the rest shift past 255
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    if set(table.values()) != set(alphabet):
        raise ExportError(
            "tokenizers' ByteLevel alphabet is not GPT-2's byte table; cannot build a byte tokenizer"
        )
    tok = Tokenizer(models.BPE(vocab={ch: b for b, ch in table.items()}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok.to_str()


def _special_tokens(tokenizer_json: str) -> dict[str, Any]:
    """EOS (first of the usual end-of-text names the vocabulary has) and its id, else empty."""
    data = json.loads(tokenizer_json)
    vocab = data.get("model", {}).get("vocab", {})
    added = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    for name in EOS_CANDIDATES:
        token_id = added.get(name, vocab.get(name) if isinstance(vocab, dict) else None)
        if token_id is not None:
            return {"eos_token": name, "eos_token_id": int(token_id)}
    return {}


def tokenizer_config(special: dict[str, Any], max_len: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        "padding_side": "left",  # generation batches pad on the left
    }
    if "eos_token" in special:
        cfg.update(eos_token=special["eos_token"], pad_token=special["eos_token"])
    return cfg


# ---------------------------------------------------------------------------------------------- export
def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def hf_config(mythos_cfg: dict[str, Any], special: dict[str, Any], dtype: str) -> dict[str, Any]:
    eos = special.get("eos_token_id")
    return {
        "architectures": ["MythosForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_mythos.MythosHFConfig",
            "AutoModelForCausalLM": "modeling_mythos.MythosForCausalLM",
        },
        "model_type": "mythos",
        "mythos": mythos_cfg,
        "num_steps": mythos_cfg["max_loop_iters"],
        "vocab_size": mythos_cfg["vocab_size"],
        "hidden_size": mythos_cfg["dim"],
        "num_attention_heads": mythos_cfg["n_heads"],
        "max_position_embeddings": mythos_cfg["max_seq_len"],
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "dtype": dtype,
        "rope_convention": ROPE_CONVENTION,
        "cache_layout": cache_layout(mythos_cfg),
        "mythos_export_format": EXPORT_FORMAT,
    }


def cache_layout(cfg: dict[str, Any]) -> str:
    """What one cached token holds per slot (prelude layers + one slot per loop + coda layers)."""
    if cfg["attn_type"] == "mla":
        return f"mla: latent ({cfg['kv_lora_rank']}) + one shared rope key ({cfg['qk_rope_head_dim']})"
    return f"gqa: k and v, {cfg['n_kv_heads']} heads x {cfg['dim'] // cfg['n_heads']}"


def export_hf(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    force: bool = False,
    eval_file: str | None = None,
    heldout: str | None = None,
) -> Path:
    """Write the Hugging Face directory for a checkpoint or run folder; returns ``out``.

    Assembled in a temporary sibling and renamed into place, so ``out`` is never half-written.
    """
    from safetensors.torch import save_file

    from mythos.model.checkpoint import TIED_KEYS, load_checkpoint
    from mythos.model.locate import find_checkpoint

    from .card import model_card, run_facts
    from .lmeval import TASK_DIR, write_tasks

    try:
        ckpt = find_checkpoint(source)
    except FileNotFoundError as exc:
        raise ExportError(str(exc)) from None
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise ExportError(f"{target} exists and is not empty; pass --force to replace it")
    model = load_checkpoint(ckpt)
    cfg = model.cfg.to_dict()
    dtype = str(model.embed.weight.dtype).removeprefix("torch.")
    tok_path = ckpt / "tokenizer.json"
    if tok_path.is_file():
        tokenizer_text, tokenizer_kind = tok_path.read_text(encoding="utf-8"), "the run's tokenizer.json"
    elif cfg["vocab_size"] >= 256:
        tokenizer_text, tokenizer_kind = (
            byte_tokenizer_json(),
            "UTF-8 bytes (ids 0-255; the run had no tokenizer)",
        )
    else:
        tokenizer_text, tokenizer_kind = None, None
    special = _special_tokens(tokenizer_text) if tokenizer_text else {}

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(target)
    try:
        state = {
            WEIGHT_PREFIX + k: v.detach().contiguous().cpu()
            for k, v in model.state_dict().items()
            if k not in TIED_KEYS
        }
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt", "mythos": EXPORT_FORMAT})
        for name, text in code_files().items():
            (tmp / name).write_text(text, encoding="utf-8")
        _write_json(tmp / "config.json", hf_config(cfg, special, dtype))
        generation = {"do_sample": False, "eos_token_id": special.get("eos_token_id")}
        generation["pad_token_id"] = special.get("eos_token_id")
        _write_json(tmp / "generation_config.json", generation)
        if tokenizer_text is not None:
            (tmp / "tokenizer.json").write_text(tokenizer_text, encoding="utf-8")
            _write_json(tmp / "tokenizer_config.json", tokenizer_config(special, cfg["max_seq_len"]))
        facts = run_facts(ckpt, eval_file)
        facts["tokenizer"] = tokenizer_kind or "none (vocab_size < 256 and the run had no tokenizer.json)"
        facts["lm_eval_tasks"] = write_tasks(tmp / TASK_DIR, target / TASK_DIR, heldout)
        (tmp / "README.md").write_text(model_card(model, facts, cache_layout(cfg)), encoding="utf-8")
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------------------------------------- import
def read_hf_dir(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json, mythos config dict) of an exported directory, checked for what mythos can load."""
    d = Path(directory)
    config_file = d / "config.json"
    if not config_file.is_file() or not (d / "model.safetensors").is_file():
        raise ExportError(
            f"{d} is not an exported mythos directory: it needs config.json and model.safetensors"
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") != "mythos" or not isinstance(config.get("mythos"), dict):
        raise ExportError(
            f"{config_file}: model_type={config.get('model_type')!r} is not 'mythos' (or the `mythos` config "
            "is missing): only directories written by `mythos export --hf` can be imported"
        )
    rope = config.get("rope_convention", ROPE_CONVENTION)
    if rope != ROPE_CONVENTION:
        raise ExportError(
            f"{config_file}: rope_convention={rope!r}, but mythos rotates {ROPE_CONVENTION!r} pairs; the weights "
            "would give different logits"
        )
    return config, config["mythos"]


def import_hf(directory: str | os.PathLike[str], out: str | os.PathLike[str]):
    """Load an exported directory back into a mythos checkpoint at ``out`` (bit-exact); returns the model."""
    from safetensors.torch import load_file

    from mythos.model.checkpoint import TIED_KEYS, load_checkpoint, save_checkpoint

    d = Path(directory)
    _, mythos_cfg = read_hf_dir(d)
    state = load_file(str(d / "model.safetensors"))
    outside = sorted(k for k in state if not k.startswith(WEIGHT_PREFIX))
    if outside:
        raise ExportError(f"{d}/model.safetensors has weights outside {WEIGHT_PREFIX!r}: {outside[:3]}")
    state = {k.removeprefix(WEIGHT_PREFIX): v for k, v in state.items()}
    for key in TIED_KEYS:
        state.pop(key, None)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.import-", dir=target.parent))
    try:
        from safetensors.torch import save_file

        from mythos.model.checkpoint import FORMAT

        save_file(state, str(staging / "model.safetensors"), metadata={"format": FORMAT})
        _write_json(staging / "config.json", mythos_cfg)
        try:
            model = load_checkpoint(staging)  # validates config and weights together
        except ValueError as exc:
            raise ExportError(f"{d}: {exc}") from None
        save_checkpoint(model, target)
        if (d / "tokenizer.json").is_file():
            atomic_copy(d / "tokenizer.json", target / "tokenizer.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model
