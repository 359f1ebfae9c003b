"""Compiled-graph replay: ``torch.compile`` a step function once per variant, then call its graph directly.

A decode step's inputs — weights, cache, and per-variant token/loop buffers the caller refills before each
step — are the same tensors at every step. So after dynamo has traced and inductor compiled a variant, the
compiled graph can be called with those tensors directly, skipping dynamo's per-call frame handling and
guard checks (a noticeable share of a batch-1 CPU step). A replay trusts that those tensors are still the
step's inputs: the caller must never replace them (call :meth:`ReplayedStep.compile` again after doing so).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class ReplayedStep:
    """``torch.compile`` of ``fn`` with inductor, each variant's graph remembered and replayed.

    A *variant* is whatever the caller's ``key`` names (e.g. batch width, depth); its *static inputs* are the
    tensors the caller refills in place before every call (:meth:`buffers`).
    """

    def __init__(self, fn: Callable[..., Tensor], device: torch.device) -> None:
        self.fn = fn
        self.device = device
        self.compiled: Callable[..., Tensor] | None = None
        self.graphs: dict[tuple, tuple[Callable, tuple]] = {}  # variant -> (compiled graph, its inputs)
        self.static: dict[tuple, tuple[Tensor, ...]] = {}  # variant -> the tensors refilled each step
        self.capturing: tuple | None = None

    def compile(self, **kwargs) -> None:
        """Compile ``fn`` (fullgraph, static shapes); on CPU the graph gets a C++ wrapper (``cpp_wrapper``).

        ``backend=`` opts out of replay (inductor still gets the options); ``mode=`` passes that mode's
        inductor options.
        """
        kwargs.setdefault("fullgraph", True)
        # one graph per variant in use; past the limit the caller runs eagerly
        kwargs.setdefault("recompile_limit", 64)
        options = dict(kwargs.pop("options", None) or {})
        if kwargs.get("mode") and "backend" not in kwargs:  # our backend takes the mode's inductor options
            options = {**torch._inductor.list_mode_options(kwargs.pop("mode")), **options}
        if self.device.type == "cpu":
            # a batch-1 step runs ~100 small kernels: calling them from C++ saves about a tenth of the step
            options.setdefault("cpp_wrapper", True)
            # compute a value read by several kernels once, not again inside each consumer's loop (a norm
            # fused into a projection was re-evaluated for every weight row)
            options.setdefault("realize_reads_threshold", 1)
        options.setdefault("size_asserts", False)  # every input's shape is fixed by the caller and guarded
        self.graphs.clear()  # graphs of an earlier compile() must not outlive it
        if "backend" in kwargs:
            backend = kwargs.pop("backend")
            self.compiled = torch.compile(
                self.fn,
                dynamic=False,
                backend=backend,
                options=options if backend == "inductor" else None,
                **kwargs,
            )
        else:
            replayable = kwargs["fullgraph"]  # one graph per step: what the backend sees is the whole step
            self.compiled = torch.compile(
                self.fn, dynamic=False, backend=self._capturing_backend(options, replayable), **kwargs
            )

    def buffers(self, key: tuple, make: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        """The variant's static input tensors (made once by ``make``), for the caller to refill in place."""
        if key not in self.static:
            self.static[key] = make()
        return self.static[key]

    def __call__(self, key: tuple, *args) -> Tensor:
        """Run the variant ``key``: its replayed graph if captured, else the compiled function on ``args``
        (which must hold the variant's :meth:`buffers`). Raises dynamo's recompile-limit error unchanged."""
        replay = self.graphs.get(key)
        if replay is not None:
            graph, inputs = replay
            return graph(*inputs)[0]
        self.capturing = (key, self.static.get(key, ()))
        try:
            return self.compiled(*args)
        finally:
            self.capturing = None

    def _capturing_backend(self, options: dict, replayable: bool) -> Callable:
        """Inductor with ``options``, remembering each graph and its inputs under the variant being run."""
        from torch._inductor.compile_fx import compile_fx

        def backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
            compiled = compile_fx(gm, example_inputs, config_patches=options)
            key, static = self.capturing or (None, ())
            outputs = gm.graph.output_node().args[0]
            inputs = {id(t) for t in example_inputs}
            if (
                replayable
                and key is not None
                and len(outputs) == 1
                and all(id(t) in inputs for t in static)
                and all(isinstance(t, Tensor) for t in example_inputs)
            ):
                self.graphs[key] = (compiled, tuple(example_inputs))
            return compiled

        return backend
