"""`mythos generate` and `mythos serve`: load a checkpoint (or build a preset) and run the decode engine."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch

from mythos import envelope
from mythos.infer.engine import Engine
from mythos.infer.sampling import SamplingParams, sample
from mythos.infer.tokenizer import StreamDecoder, load_tokenizer
from mythos.model.exits import ExitCriterion

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _model_and_tokenizer(args):
    """The model (in ``--dtype`` if given) and its text tokenizer; a bad target or a model without a text
    vocabulary is a ``ValueError`` the command turns into exit 2."""
    model, ckpt = load_model(args.model, seed=args.seed, max_seq_len=args.max_len)
    if args.dtype:
        model = model.to(DTYPES[args.dtype])
    return model, load_tokenizer(ckpt, model.cfg.vocab_size)


def load_model(source: str, seed: int = 0, max_seq_len: int | None = None):
    """A checkpoint directory (or a training run folder: its latest intact checkpoint), or a preset name (random
    weights, for trying the machinery). Returns (model, checkpoint directory or None).

    Raises ``mythos.model.locate.NotAModel`` / ``CheckpointError`` (both ``ValueError``) for a target that is
    neither, or a damaged checkpoint; the commands map them to exit 2.
    """
    from mythos.model import Mythos, get_preset
    from mythos.model.locate import resolve

    ref = resolve(source)
    for note in ref.notes:
        print(f"mythos: warning: {note}", file=sys.stderr)
    if ref.checkpoint is not None:
        from mythos.model.checkpoint import load_checkpoint

        return load_checkpoint(ref.checkpoint).eval(), ref.checkpoint
    cfg = get_preset(ref.preset or source)
    if max_seq_len and max_seq_len > cfg.max_seq_len:  # random weights: any context length will do
        cfg = get_preset(ref.preset or source, max_seq_len=max_seq_len)
    torch.manual_seed(seed)
    print(f"mythos: {source!r} is a preset: random weights (seed {seed}); output is noise", file=sys.stderr)
    return Mythos(cfg).eval(), None


def _load_or_fail(prog: str, args):
    """(model, tokenizer), or None after printing the one-line reason (bad target, damaged checkpoint)."""
    try:
        return _model_and_tokenizer(args)
    except (ValueError, OSError) as exc:
        if getattr(args, "json", False):
            print(envelope.dumps(envelope.failure(str(exc), field="model")))
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", metavar="CHECKPOINT_OR_PRESET", help="checkpoint directory or preset name (e.g. small)"
    )
    p.add_argument(
        "--n-loops", type=int, default=None, help="recurrent depth (default: the model's max_loop_iters)"
    )
    p.add_argument(
        "--max-len",
        type=int,
        default=None,
        help="context length to allocate (default: max_seq_len; a preset is stretched to fit)",
    )
    p.add_argument(
        "--cache-policy", default="per-loop", help="per-loop | shared | last-K (KV memory across loops)"
    )
    p.add_argument("--adaptive", action="store_true", help="tokens whose ACT halts skip the remaining loops")
    p.add_argument("--compile", action="store_true", help="torch.compile the decode step (slow first call)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="run the model in this dtype (default: the checkpoint's)",
    )
    p.add_argument(
        "--weight-dtype",
        choices=sorted(DTYPES),
        default=None,
        help="store the decode engine's matrices in this dtype, activations and cache unchanged "
        "(bfloat16: faster batch-1 decode, see docs/infer.md)",
    )
    p.add_argument(
        "--cache-dtype",
        choices=sorted(DTYPES),
        default=None,
        help="store the KV cache in this dtype (bfloat16: half the cache bytes; see docs/infer.md)",
    )


def _engine(p: argparse.ArgumentParser, args: argparse.Namespace, model, **sizes) -> Engine:
    """The engine the shared flags describe (a bad value is a usage error naming it), compiled if asked."""
    try:
        engine = Engine.from_model(
            model,
            cache_policy=args.cache_policy,
            adaptive=args.adaptive,
            weight_dtype=DTYPES[args.weight_dtype] if args.weight_dtype else None,
            cache_dtype=DTYPES[args.cache_dtype] if args.cache_dtype else None,
            **sizes,
        )
    except ValueError as exc:
        p.error(str(exc))
    if args.compile:
        engine.compile()
    return engine


def _exit_criterion(text: str) -> ExitCriterion:
    """argparse type for ``--exit``: a bad value is a usage error naming what is valid."""
    try:
        return ExitCriterion.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def generate_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mythos generate", description="Generate text from a checkpoint or preset."
    )
    _engine_args(p)
    p.add_argument("--prompt", action="append", required=True, help="prompt text (repeat for a batch)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated (one prompt)")
    p.add_argument(
        "--json", action="store_true", help="print the completions (and loops run) as JSON (see docs/cli.md)"
    )
    p.add_argument(
        "--stats", action="store_true", help="print timing and adaptive-depth statistics to stderr"
    )
    p.add_argument(
        "--exit",
        type=_exit_criterion,
        default=None,
        metavar="CRITERION:THRESHOLD",
        help="per-token exit without an ACT head: kl:NATS (next-token distributions of successive loops), "
        "delta:REL (relative change of the latent) or argmax:N (argmax unchanged N loops), e.g. kl:0.01",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.max_new_tokens < 1:
        p.error(f"--max-new-tokens={args.max_new_tokens} must be >= 1")
    try:
        params = SamplingParams(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as exc:
        p.error(str(exc))
    if args.stream and len(args.prompt) > 1:
        p.error("--stream prints one sequence: give a single --prompt")
    if args.stream and args.json:
        p.error("--stream and --json are exclusive: --json prints one object when generation ends")

    loaded = _load_or_fail("mythos generate", args)
    if loaded is None:
        return 2
    model, tokenizer = loaded
    prompts = [tokenizer.encode(t) for t in args.prompt]
    if any(not ids for ids in prompts):
        p.error("--prompt must not be empty")
    longest = max(map(len, prompts)) + args.max_new_tokens
    max_len = args.max_len or min(model.cfg.max_seq_len, longest)
    if longest > max_len:
        p.error(f"prompt + --max-new-tokens = {longest} tokens exceeds the context ({max_len}); shorten them")
    n_loops = args.n_loops or model.cfg.max_loop_iters
    engine = _engine(p, args, model, slots=len(prompts), max_len=max_len, n_loops=n_loops, exit=args.exit)
    B = len(prompts)
    gens = [
        SamplingParams(args.temperature, args.top_k, args.top_p, args.seed + i).generator() for i in range(B)
    ]
    decoders = [StreamDecoder(tokenizer) for _ in range(B)]
    done = [False] * B
    generated = [0] * B
    t0 = time.perf_counter()
    logits = engine.prefill(0, prompts)
    loops_run = [engine.last_loops.tolist()]  # loops the forward producing each step's tokens ran, per row
    t_prefill = time.perf_counter() - t0
    steps = 0
    t1 = time.perf_counter()
    for step in range(args.max_new_tokens):
        tokens = sample(logits, [params] * B, gens)
        for i, tok in enumerate(tokens.tolist()):
            if done[i]:
                continue
            if tokenizer.eos_id is not None and tok == tokenizer.eos_id:
                done[i] = True
                continue
            generated[i] += 1
            delta = decoders[i].push(tok)
            if args.stream:
                sys.stdout.write(delta)
                sys.stdout.flush()
        if all(done) or step == args.max_new_tokens - 1:
            break
        logits = engine.decode(0, tokens)
        loops_run.append(engine.last_loops.tolist())
        steps += 1
    t_decode = time.perf_counter() - t1
    if args.stream:
        sys.stdout.write(decoders[0].flush() + "\n")
    elif args.json:
        for d in decoders:
            d.flush()
        completions = [
            {"prompt": args.prompt[i], "text": d.sent, "tokens": generated[i]} for i, d in enumerate(decoders)
        ]
        print(
            envelope.dumps(
                envelope.success(completions=completions, n_loops=n_loops, loops_per_step=loops_run)
            )
        )
    else:
        for i, d in enumerate(decoders):
            d.flush()
            print((f"[{i}] " if B > 1 else "") + args.prompt[i] + d.sent)
    if args.stats:
        tps = B * steps / t_decode if t_decode > 0 else float("nan")
        print(
            f"prefill {t_prefill * 1e3:.1f} ms; decode {steps} steps x {B} rows: {tps:.1f} tokens/s; "
            f"KV cache {engine.cache.bytes_per_token()} bytes/token ({engine.cache.policy})",
            file=sys.stderr,
        )
        if args.exit is not None:
            per_token = [n for row in loops_run for n in row]
            print(
                f"exit {args.exit}: {sum(per_token) / len(per_token):.2f} loops per generated token "
                f"(of {n_loops}); loops per step {loops_run}",
                file=sys.stderr,
            )
        if args.adaptive or args.exit is not None:
            st = engine.stats
            print(
                f"adaptive depth: {st.token_loops_run}/{st.token_loops_full} token-loops run "
                f"({100 * st.saved_fraction:.1f}% saved)",
                file=sys.stderr,
            )
    return 0


def serve_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mythos serve", description="Serve a checkpoint over an OpenAI-compatible API."
    )
    _engine_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port)")
    p.add_argument("--slots", type=int, default=16, help="sequences decoded together (continuous batching)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=256,
        help="requests that may wait for a slot; beyond it: 429 + Retry-After",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("MYTHOS_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $MYTHOS_API_KEY; none = open)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds a client may take to send headers or body chunks",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds in-flight requests may take to finish",
    )
    p.add_argument("--name", default=None, help="model id reported by /v1/models (default: the argument)")
    p.add_argument("--max-tokens", type=int, default=16, help="default max_tokens when a request omits it")
    p.add_argument("--seed", type=int, default=0, help="weights seed for presets")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = p.parse_args(argv)
    for flag, value, low in [
        ("--slots", args.slots, 1),
        ("--max-queue", args.max_queue, 0),
        ("--max-tokens", args.max_tokens, 1),
        ("--n-loops", args.n_loops, 1),
    ]:
        if value is not None and value < low:
            p.error(f"{flag}={value} is invalid: use an integer >= {low}")
    if not 0 <= args.port <= 65535:
        p.error(f"--port={args.port} is invalid: use 0..65535 (0 = any free port)")
    for flag, value in [("--read-timeout", args.read_timeout), ("--drain-timeout", args.drain_timeout)]:
        if not value > 0:
            p.error(f"{flag}={value} is invalid: use a number of seconds > 0")
    if args.api_key is not None and not args.api_key:
        p.error("--api-key is empty: give a key, or omit the flag to serve without one")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from mythos.infer.scheduler import Scheduler
        from mythos.infer.server import HttpServer, ServeState, bind_socket
    except ImportError as exc:
        print(
            f"mythos serve needs the serve extra ({exc.name} is missing): pip install 'mythos[serve]'",
            file=sys.stderr,
        )
        return 2
    try:  # bind before loading the model: a port in use is reported at once
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        p.error(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} (pick another --port or --host)"
        )
    if args.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"mythos serve: warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
            file=sys.stderr,
        )

    loaded = _load_or_fail("mythos serve", args)
    if loaded is None:
        return 2
    model, tokenizer = loaded
    engine = _engine(p, args, model, slots=args.slots, max_len=args.max_len, n_loops=args.n_loops)
    if args.compile:
        print(
            "compiling the decode step for every batch width (a minute or two) ...",
            file=sys.stderr,
            flush=True,
        )
        print(f"compiled widths {engine.warm_up()}", file=sys.stderr, flush=True)
    scheduler = Scheduler(engine, max_waiting=args.max_queue).start()
    name = args.name or (Path(args.model).name if Path(args.model).is_dir() else args.model)
    state = ServeState(
        scheduler,
        tokenizer,
        name,
        default_max_tokens=args.max_tokens,
        api_key=args.api_key,
        max_queue=args.max_queue,
        read_timeout=args.read_timeout,
    )
    server = HttpServer(state, sock, verbose=args.verbose, drain_timeout=args.drain_timeout)
    host, port = server.server_address[:2]
    print(
        f"mythos serve: {name} on http://{host}:{port}/v1 ({args.slots} slots, "
        f"{engine.max_len} tokens context, tokenizer {tokenizer.name})",
        flush=True,
    )
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal: let that end here, not kill the process
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        scheduler.stop()
    print("mythos serve: drained and stopped", file=sys.stderr, flush=True)
    return 0
