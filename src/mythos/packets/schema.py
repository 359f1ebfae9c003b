"""A small JSON Schema (2020-12 subset) validator, so checking a packet needs no dependency.

Supports exactly what schemas/next_pass_packet.schema.json uses: type, const, enum, required, properties,
additionalProperties: false, items, minItems, minLength, pattern, minimum, maximum and local ``$ref``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

_TYPES = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float) or (isinstance(v, float) and not isinstance(v, bool)),
}


@cache
def packet_schema() -> dict:
    return json.loads(
        resources.files("mythos.packets").joinpath("schemas/next_pass_packet.schema.json").read_text()
    )


@cache
def _pattern(text: str) -> re.Pattern:
    return re.compile(text)


def validate(instance: Any, schema: dict | None = None, *, limit: int = 50) -> list[str]:
    """Return up to ``limit`` problems as ``<json path>: <what is wrong>``; empty means valid."""
    root = schema if schema is not None else packet_schema()
    errors: list[str] = []
    _check(instance, root, root, "$", errors, limit)
    return errors


def _check(value: Any, schema: dict, root: dict, path: str, errors: list[str], limit: int) -> None:
    if len(errors) >= limit:
        return
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        _check(value, target, root, path, errors, limit)
        return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {schema['enum']}, got {value!r}")
        return
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_TYPES[name](value) for name in names):
            errors.append(f"{path}: must be {' or '.join(names)}, got {type(value).__name__}")
            return
    if type(value) is dict:
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{path}: missing required field {name!r}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                _check(item, props[key], root, f"{path}.{key}", errors, limit)
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected field {key!r}")
    elif type(value) is list:
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: needs at least {schema['minItems']} item(s)")
        items = schema.get("items")
        if items is not None:
            for index, item in enumerate(value):
                _check(item, items, root, f"{path}[{index}]", errors, limit)
                if len(errors) >= limit:
                    return
    elif type(value) is str:
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: must not be empty")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    elif type(value) in (int, float):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above {schema['maximum']}")
