"""Reading ``POST /v1/jobs`` bodies without stalling the server.

A job body is JSON or npz (:mod:`qldm.service.arrays`). Small bodies (up to
:data:`INLINE_BYTES`) are read where the request is handled: it takes a few milliseconds. Large
ones are checked for their shape before they are parsed, and then parsed elsewhere:

- a JSON body with more arrays (``[``) than a job may hold samples (plus a few for the other
  fields) is refused before it is parsed (``backend_limit``, ``field="inputs"``): a body of
  10^6 rows is refused in milliseconds, not after seconds of parsing;
- a larger JSON body is parsed and validated in a separate process (:class:`BodyReader`):
  CPython's JSON parser and pydantic's validator hold the interpreter lock for as long as they
  run (0.6 s and 0.8 s for 23 MB on the test machine), so in a thread they would still stop the
  event loop, and ``/healthz`` with it. The process sends back the document with its arrays as
  numpy arrays (a memory copy), or the error it found;
- an npz body is read in a thread (its arrays are views of the body; no parsing) and its
  ``inputs`` row count checked before anything validates them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from qldm.errors import (
    BackendLimitError,
    InvalidSpecError,
    QldmError,
    UnsupportedMediaTypeError,
    error_class,
)
from qldm.service.arrays import NPZ_MEDIA_TYPE, first_non_finite, json_object, unpack

__all__ = ["INLINE_BYTES", "SPARE_ARRAYS", "BodyReader", "json_document", "npz_document"]

INLINE_BYTES = 256 * 1024
"""Bodies up to this size are read in the request's own task (a few milliseconds at most)."""

SPARE_ARRAYS = 64
"""JSON arrays a job body may hold besides its ``inputs`` rows (``inputs`` itself, ``weights``,
``noise_levels``, ``observables``, channel strengths, ...)."""


def _too_many_samples(rows: int, max_batch: int) -> BackendLimitError:
    return BackendLimitError(
        f"{rows} samples, more than this server's limit of {max_batch} per job", field="inputs"
    )


def json_document(body: bytes, *, max_batch: int | None = None) -> dict[str, Any]:
    """A JSON job body as a dict, NaN and infinities refused wherever they are.

    Args:
        body: the body's bytes.
        max_batch: refuse, before parsing, a body with more JSON arrays than ``max_batch``
            rows of ``inputs`` and :data:`SPARE_ARRAYS` others could need.

    Raises:
        BackendLimitError: too many arrays for ``max_batch`` samples (``field="inputs"``).
        InvalidSpecError: not a JSON object, nested too deeply (``field="body"``), or a NaN or
            infinity (its dotted path).
    """
    if max_batch is not None:
        _count_check(body, max_batch)
    document = json_object(body, field="body", error=InvalidSpecError)
    where = first_non_finite(document)
    if where is not None:
        raise InvalidSpecError("NaN and infinity are not numbers this API takes", field=where)
    return document


def npz_document(body: bytes, *, max_bytes: int, max_batch: int | None = None) -> dict[str, Any]:
    """An npz job body as a dict whose array fields are numpy arrays.

    Raises:
        RequestValidationError, PayloadTooLargeError: see :func:`qldm.service.arrays.unpack`.
        BackendLimitError: ``inputs`` has more than ``max_batch`` rows (``field="inputs"``).
        InvalidSpecError: a NaN or infinity (its dotted path).
    """
    document, arrays = unpack(body, max_bytes=max_bytes)
    rows = len(arrays["inputs"]) if arrays.get("inputs", np.empty(())).ndim >= 1 else 0
    if max_batch is not None and rows > max_batch:
        raise _too_many_samples(rows, max_batch)
    where = first_non_finite(document) or next(
        (p for name, a in arrays.items() if (p := first_non_finite(a, name))), None
    )
    if where is not None:
        raise InvalidSpecError("NaN and infinity are not numbers this API takes", field=where)
    document.update(arrays)  # arrays stay arrays: JobRequest's fields take them
    return document


def _validated_json(body: bytes, max_batch: int) -> tuple[str, Any]:
    """In the reader process: parse and validate a JSON job body.

    Returns:
        ``("ok", document)`` with the array fields as float64 arrays, or ``("error", (code,
        message, field))``.
    """
    from qldm.jobs.model import JobRequest

    try:
        document = json_document(body)
        request = JobRequest.parse(document)
    except QldmError as exc:
        return "error", (exc.code, exc.message, exc.field)
    rows = request.n_samples
    if rows > max_batch:
        return "error", ("backend_limit", _too_many_samples(rows, max_batch).message, "inputs")
    document.update(request.arrays())
    return "ok", document


def _start_reader() -> None:
    """Warm the reader process up: import what validating a request needs."""
    import qldm.jobs.model  # noqa: F401


class BodyReader:
    """Reads job bodies: small ones inline, large ones off the event loop.

    Args:
        max_bytes: the server's body limit (an npz archive may not unpack to more).
        max_batch: the server's sample limit per job.
        inline_bytes: bodies up to this size are read in the calling task.

    The reader process (one, started on the first large JSON body) is stopped by
    :meth:`close`.
    """

    def __init__(self, *, max_bytes: int, max_batch: int, inline_bytes: int = INLINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self.inline_bytes = inline_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    async def read(self, media: str, body: bytes) -> dict[str, Any]:
        """The job document of a body in ``media``.

        Raises:
            UnsupportedMediaTypeError: neither JSON nor npz (``field="Content-Type"``).
            QldmError: whatever :func:`json_document`, :func:`npz_document` or
                :meth:`qldm.jobs.model.JobRequest.parse` refuse, with its field.
        """
        small = len(body) <= self.inline_bytes
        if media == NPZ_MEDIA_TYPE:
            if small:
                return npz_document(body, max_bytes=self.max_bytes, max_batch=self.max_batch)
            return await run_in_threadpool(
                npz_document, body, max_bytes=self.max_bytes, max_batch=self.max_batch
            )
        if media in ("application/json", "") or media.endswith("+json"):
            if small:
                return json_document(body)
            return await self._read_json_elsewhere(body)
        raise UnsupportedMediaTypeError(
            f"send application/json or {NPZ_MEDIA_TYPE}, not {media!r}", field="Content-Type"
        )

    async def _read_json_elsewhere(self, body: bytes) -> dict[str, Any]:
        # counting brackets is a memchr-speed scan (10 ms for 17 MB): refuse before shipping
        await run_in_threadpool(_count_check, body, self.max_batch)
        future = self._reader().submit(_validated_json, body, self.max_batch)
        outcome, value = await asyncio.wrap_future(future)
        if outcome == "ok":
            document: dict[str, Any] = value
            return document
        code, message, field = value
        raise (error_class(code) or InvalidSpecError)(message, field=field)

    def _reader(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")  # no fork of a threaded server
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=context, initializer=_start_reader
                )
            return self._pool

    def close(self) -> None:
        """Stop the reader process, if one was started."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _count_check(body: bytes, max_batch: int) -> None:
    """Refuse a JSON body with more ``[`` than ``max_batch`` rows and the other fields need."""
    arrays = body.count(b"[")
    if arrays > max_batch + SPARE_ARRAYS:
        raise BackendLimitError(
            f"the body holds {arrays} JSON arrays: more than the rows of the largest job "
            f"this server takes ({max_batch} samples) and its other fields",
            field="inputs",
        )
