"""Run in a fresh process with ``mythos`` made unimportable: load an exported directory with transformers only
and write what it computes (logits, cached decode, generations, pipeline text) to a torch file for the test."""

import importlib.abc
import json
import sys


class BlockMythos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mythos" or name.startswith("mythos."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: the export must not need mythos)")
        return None


sys.meta_path.insert(0, BlockMythos())

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline  # noqa: E402


def main(out_dir: str, job_file: str, result_file: str) -> None:
    with open(job_file) as f:
        job = json.load(f)
    try:
        import mythos  # noqa: F401

        raise SystemExit("mythos is importable in the child: the blocker failed")
    except ModuleNotFoundError:
        pass
    model = AutoModelForCausalLM.from_pretrained(out_dir, trust_remote_code=True).eval()
    res = {"dtype": str(model.dtype), "class": type(model).__name__, "config": model.config.to_dict()}
    ids = torch.tensor(job["ids"])
    with torch.no_grad():
        res["logits"] = {n: model(ids, num_steps=n).logits for n in job["loops"]}
        # cached: prefill the first `prefill` tokens, then one token per call
        k = job["prefill"]
        out = model(ids[:, :k], num_steps=job["decode_loops"], use_cache=True)
        steps, cache = [out.logits], out.cache
        for i in range(k, ids.shape[1]):
            out = model(ids[:, i : i + 1], cache=cache, use_cache=True, num_steps=job["decode_loops"])
            steps.append(out.logits)
            cache = out.cache
        res["decode"] = torch.cat(steps, dim=1)
        for name, kwargs in job.get("forward_exits", {}).items():
            out = model(ids, **kwargs)
            res[f"exit_{name}"] = (out.logits, out.exit_depth)
    gen = {}
    for name, spec in job.get("generate", {}).items():
        torch.manual_seed(spec.pop("seed", 0))
        prompt = torch.tensor(spec.pop("input_ids"))
        mask = spec.pop("attention_mask", None)
        if mask is not None:
            spec["attention_mask"] = torch.tensor(mask)
        gen[name] = model.generate(prompt, **spec)
    res["generate"] = gen
    if job.get("pipeline"):
        tok = AutoTokenizer.from_pretrained(out_dir)
        res["tok_ids"] = tok(job["pipeline"]["text"]).input_ids
        pipe = pipeline("text-generation", model=out_dir, trust_remote_code=True)
        res["pipeline"] = pipe(job["pipeline"]["text"], **job["pipeline"]["kwargs"])[0]["generated_text"]
        res["tok_decode"] = tok.decode(job["pipeline"]["decode"])
    torch.save(res, result_file)


if __name__ == "__main__":
    main(*sys.argv[1:4])
