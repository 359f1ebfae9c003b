"""mythos — recurrent-depth reasoning in three wings.

* :mod:`mythos.model`   — the Recurrent-Depth Transformer (torch).
* :mod:`mythos.train`   — data, training loop, synthetic reasoning tasks, the demo.
* :mod:`mythos.infer`   — fast decode, adaptive depth, and an OpenAI-compatible server.
* :mod:`mythos.reason`  — the Prelude → lens rounds → Coda engine over real LLMs.
* :mod:`mythos.packets` — the deterministic, hash-provenanced packet compiler (no torch).

Importing ``mythos`` itself loads nothing heavy; each wing is imported on use.
"""

__version__ = "0.1.0"
