"""The one shape of `mythos COMMAND --json` output (see docs/cli.md); standard library only.

One JSON object on stdout. ``"ok"`` is true exactly when the command exits 0. On success the command's own fields
sit beside it; on failure it carries ``"error"`` (one line) and, when known, the input ``"field"`` at fault, its
``"value"`` and a ``"fix"``. This is the shape `mythos packet` and `mythos skill` already used, so their output is
unchanged. The CLI layer prints what these return; nothing here prints.
"""

from __future__ import annotations

import json
from typing import Any


def success(**fields: Any) -> dict[str, Any]:
    """``{"ok": true, **fields}``: the command did its work (exit 0)."""
    if "ok" in fields:
        raise ValueError("a success envelope sets 'ok' itself")
    return {"ok": True, **fields}


def failure(
    message: str, *, field: str | None = None, value: Any = None, fix: str | None = None, **fields: Any
) -> dict[str, Any]:
    """``{"ok": false, "error", "field", "value", "fix", **fields}``: bad input (exit 2) or failed work (exit 1)."""
    if not isinstance(value, str | int | float | bool | type(None)):
        value = repr(value)
    return {"ok": False, "error": message, "field": field, "value": value, "fix": fix, **fields}


def dumps(payload: dict[str, Any], *, sort_keys: bool = False) -> str:
    """The printed form: indented, UTF-8 as is (``ensure_ascii=False``), key order as built unless sorted."""
    return json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=sort_keys)
