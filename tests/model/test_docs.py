"""The examples in docs/model.md run as written (in order, sharing one namespace)."""

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "model.md"


def test_model_doc_examples_run(capsys):
    importlib.import_module("open_mythos.main")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102
    assert namespace["cache"].pos == 9
    assert namespace["greedy"].shape == (1, 8)
