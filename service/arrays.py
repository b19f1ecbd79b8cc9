"""The binary array transport: an ``.npz`` archive of arrays plus one JSON document.

Wire format (``Content-Type: application/x-npz``), the same for requests and results:

- an uncompressed or deflated zip, as :func:`numpy.savez` writes it (``allow_pickle`` off;
  qldm reads and writes it with :mod:`qldm.jobs.npz`);
- one entry named ``json``: a 1-D ``uint8`` array holding a UTF-8 JSON object (for a job
  request: every field except the arrays; for a result: ``id``, ``status``, ``counts``,
  ``metadata``);
- one entry per array field (``inputs``, ``weights``, ``noise_levels`` in a request;
  ``values``, ``d_inputs``, ``d_weights`` and the standard errors ``values_std``,
  ``d_inputs_std``, ``d_weights_std`` where reported in a result), each a real numeric array
  (float64 on the way out). An array entry takes the place of the JSON field of the same name.

Encoding a ``(128, 6, 78)`` float64 Jacobian this way is a memory copy (about 0.5 ms), against
tens of milliseconds to print and parse the same numbers as JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from qldm.errors import PayloadTooLargeError, QldmError, RequestValidationError
from qldm.jobs import npz

__all__ = [
    "NPZ_MEDIA_TYPE",
    "first_non_finite",
    "pack",
    "unpack",
    "with_document",
]

NPZ_MEDIA_TYPE = "application/x-npz"
JSON_ENTRY = "json"


def pack(document: Mapping[str, Any], arrays: Mapping[str, np.ndarray | None]) -> bytes:
    """Write ``document`` and ``arrays`` (``None`` entries are left out) as an npz archive.

    Args:
        document: JSON-serializable fields.
        arrays: name to array; names must not be ``json`` nor keys of ``document``.

    Returns:
        The archive's bytes.
    """
    entries: dict[str, np.ndarray] = {JSON_ENTRY: _json_array(document)}
    entries.update({name: value for name, value in arrays.items() if value is not None})
    return npz.write(entries)


def with_document(archive: bytes, document: Mapping[str, Any]) -> bytes:
    """Add ``document`` as the ``json`` entry to an npz archive of arrays only (such as the
    store's result blob): the same archive :func:`pack` writes, without re-encoding the arrays
    (appending to a zip rewrites only its directory)."""
    return npz.append(archive, {JSON_ENTRY: _json_array(document)})


def _json_array(document: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(json.dumps(document, allow_nan=False).encode(), dtype=np.uint8)


def unpack(
    body: bytes, *, max_bytes: int | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an archive written by :func:`pack`.

    Args:
        body: the archive's bytes.
        max_bytes: refuse archives whose members decompress to more than this.

    Returns:
        ``(document, arrays)``: the JSON object and the other entries, as numpy arrays.

    Raises:
        RequestValidationError: not a zip, no ``json`` entry, a pickled or non-numeric array,
            invalid JSON (``field="body"`` or the entry's name).
        PayloadTooLargeError: the members decompress to more than ``max_bytes``.
    """
    try:
        arrays = npz.read(body, max_bytes=max_bytes)
    except npz.NpzTooLargeError as exc:
        raise PayloadTooLargeError(str(exc), field="body") from None
    except npz.NpzError as exc:
        what = "unreadable array" if exc.member else "not an npz archive"
        raise RequestValidationError(f"{what} ({exc})", field=exc.member or "body") from None
    if JSON_ENTRY not in arrays:
        raise RequestValidationError(f"the archive has no {JSON_ENTRY!r} entry", field="body")
    document = _json_entry(arrays.pop(JSON_ENTRY))
    for name, value in arrays.items():
        if value.dtype.kind not in "fiub":
            raise RequestValidationError(
                f"arrays must be real numbers, got dtype {value.dtype}", field=name
            )
    overlap = set(arrays) & set(document)
    if overlap:
        raise RequestValidationError(
            f"{sorted(overlap)} given both as arrays and in the JSON entry",
            field=sorted(overlap)[0],
        )
    return document, arrays


MAX_JSON_DEPTH = 16
"""How deeply a request's JSON may nest (a job request needs 4 levels: ``circuit.channel``,
``inputs`` rows); deeper documents are refused before anything walks them recursively."""


def json_object(raw: bytes, *, field: str, error: type[QldmError]) -> dict[str, Any]:
    """``raw`` parsed as a JSON object nested at most :data:`MAX_JSON_DEPTH` deep.

    Raises:
        error: (with ``field``) not UTF-8 JSON, not an object, or nested too deeply.
    """
    try:
        document = json.loads(raw)
    except RecursionError:
        raise error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", field=field) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"not JSON ({exc})", field=field) from None
    if not isinstance(document, dict):
        raise error("the JSON must be an object", field=field)
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", field=field)
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return document


def _json_entry(value: np.ndarray) -> dict[str, Any]:
    if value.dtype != np.uint8 or value.ndim != 1:
        raise RequestValidationError("the json entry must be a 1-D uint8 array", field=JSON_ENTRY)
    return json_object(value.tobytes(), field=JSON_ENTRY, error=RequestValidationError)


def first_non_finite(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in a parsed JSON document or array, if any.

    JSON text may carry ``NaN``/``Infinity`` literals (Python's parser accepts them), so the
    server looks through the whole document, not only the fields it expects numbers in.
    """
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "body")
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad = np.argwhere(~np.isfinite(value))[0]
            return ".".join([path, *(str(int(i)) for i in bad)]) if path else "body"
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = first_non_finite(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = first_non_finite(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None
