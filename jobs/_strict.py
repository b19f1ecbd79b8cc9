"""No loose coercion of untrusted job documents: ``true`` is not 1, ``"5"`` is not 5.

Pydantic's lax mode turns JSON ``true`` into ``1`` for an integer field, numeric strings into
numbers, and ``1``/``"yes"`` into booleans. For a job request those are mistakes a client made,
not values it meant (``"shots": true`` ran one shot). Pydantic's strict mode would refuse them,
but in Python mode it also refuses strings for enums and lists for tuples, which JSON cannot
send otherwise. So :func:`first_loose_value` walks a parsed document along the model's own JSON
schema and names the first value whose JSON type the schema does not allow: a boolean or a
string where only numbers are allowed, or a number or string where only a boolean is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["first_loose_value"]

_NUMERIC = frozenset({"integer", "number"})


def _types(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema node allows (``anyOf``/``oneOf`` and ``$ref`` followed)."""
    schema = _resolve(schema, defs)
    out: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        out.add(kind)
    elif isinstance(kind, list):
        out.update(k for k in kind if isinstance(k, str))
    if "enum" in schema or "const" in schema:
        out.add("string")  # enums of this API are strings; never refuse what they allow
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, ()):
            out |= _types(branch, defs)
    if not out and not any(k in schema for k in ("anyOf", "oneOf", "type")):
        out.add("any")
    return out


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _resolve(defs.get(ref.rsplit("/", 1)[-1], {}), defs)
    return schema


def _branches(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    schema = _resolve(schema, defs)
    out = [schema]
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, ()):
            out.extend(_branches(branch, defs))
    return out


def first_loose_value(
    value: Any,
    schema: Mapping[str, Any],
    *,
    defs: Mapping[str, Any] | None = None,
    path: str = "",
    skip: frozenset[str] = frozenset(),
) -> tuple[str, str] | None:
    """The first value of ``value`` whose JSON type ``schema`` does not allow.

    Args:
        value: a parsed JSON document (dicts, lists, numbers, strings, booleans, ``None``).
        schema: a JSON schema as pydantic writes it (``model_json_schema()``).
        defs: its ``$defs`` (default: ``schema["$defs"]``).
        path: the dotted path of ``value`` (``""`` at the top).
        skip: top-level keys not to look into (fields validated strictly elsewhere).

    Returns:
        ``(dotted path, reason)``, or ``None`` when every value has an allowed type.
    """
    defs = schema.get("$defs", {}) if defs is None else defs
    allowed = _types(schema, defs)
    if "any" in allowed:
        return None
    if isinstance(value, bool):
        if "boolean" not in allowed and allowed & _NUMERIC:
            return path or "body", f"expected a number, got {str(value).lower()}"
        return None
    if isinstance(value, (int, float)):
        if "boolean" in allowed and not allowed & _NUMERIC and "string" not in allowed:
            return path or "body", f"expected true or false, got {value!r}"
        return None
    if isinstance(value, str):
        if "string" not in allowed and allowed & (_NUMERIC | {"boolean"}):
            kind = "a number" if allowed & _NUMERIC else "true or false"
            return path or "body", f"expected {kind}, got the string {value!r}"
        return None
    for branch in _branches(schema, defs):
        if isinstance(value, Mapping) and "properties" in branch:
            for key, item in value.items():
                if key in skip or key not in branch["properties"]:
                    continue
                where = f"{path}.{key}" if path else str(key)
                found = first_loose_value(item, branch["properties"][key], defs=defs, path=where)
                if found is not None:
                    return found
        elif isinstance(value, list) and isinstance(branch.get("items"), Mapping):
            for index, item in enumerate(value):
                where = f"{path}.{index}" if path else str(index)
                found = first_loose_value(item, branch["items"], defs=defs, path=where)
                if found is not None:
                    return found
    return None
