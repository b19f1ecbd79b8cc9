"""The ``.npz`` container, through numpy's own writer and reader.

Every array qldm stores or sends (a request's inputs, a result's Jacobians, the HTTP binary
transport) is an npz archive: a zip whose members ``<name>.npy`` each hold one array in NumPy's
``.npy`` format. :func:`write` is :func:`numpy.savez` (uncompressed), :func:`read` is
:func:`numpy.load` with ``allow_pickle=False`` after a look at the zip directory (the members'
declared sizes against a limit), and :func:`append` adds members to an archive with
:mod:`zipfile`'s append mode, as ``numpy.savez`` writes them, leaving the members it has as they
are. What they add to numpy is the refusals: pickles, members that are not arrays, archives
that unpack to more than the caller allows, each as :class:`NpzError` naming the member.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

__all__ = ["NpzError", "NpzTooLargeError", "append", "read", "write"]

# what numpy and zipfile raise for a damaged archive or member
_BROKEN = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError)


class NpzError(ValueError):
    """The bytes are not an npz archive qldm can read (with ``member`` set when one is bad)."""

    def __init__(self, message: str, *, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


class NpzTooLargeError(NpzError):
    """The archive's members unpack to more bytes than the reader allows."""


def _refuse_objects(arrays: Mapping[str, np.ndarray]) -> None:
    for name, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise NpzError("object arrays are not written (they would need pickling)", member=name)


def write(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An npz archive of ``arrays`` (:func:`numpy.savez`: uncompressed, members in order).

    Args:
        arrays: member name (without ``.npy``) to array.

    Returns:
        The archive's bytes.

    Raises:
        NpzError: an object array (it would need pickling).
    """
    _refuse_objects(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def append(archive: bytes, arrays: Mapping[str, np.ndarray]) -> bytes:
    """``archive`` (an npz archive) with ``arrays`` added as more members, written as
    :func:`numpy.savez` writes them; the members it has are not read nor re-encoded (the zip
    directory is written again after the new members).

    Raises:
        NpzError: ``archive`` is not a zip archive, a name is taken, or an object array.
    """
    _refuse_objects(arrays)
    stream = io.BytesIO(archive)
    try:
        zipped = zipfile.ZipFile(stream, mode="a")
    except _BROKEN as exc:
        raise NpzError(f"not an npz archive ({exc})") from None
    with zipped:
        taken = {name.removesuffix(".npy") for name in zipped.namelist()} & set(arrays)
        if taken:
            raise NpzError(f"{sorted(taken)} are in the archive already", member=sorted(taken)[0])
        for name, value in arrays.items():
            with zipped.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return stream.getvalue()


def read(body: bytes, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an npz archive, by member name without ``.npy``, in archive order.

    Args:
        body: the archive (stored or deflated members, as ``numpy.savez`` and
            ``numpy.savez_compressed`` write them).
        max_bytes: refuse archives whose members unpack to more than this (by the sizes the
            zip directory declares; :mod:`zipfile` reads no member past its declared size).

    Raises:
        NpzTooLargeError: the members unpack to more than ``max_bytes``.
        NpzError: not a zip archive, a member that is not a ``.npy`` array, a pickled
            (object) array, or a damaged member (``member`` names it).
    """
    stream = io.BytesIO(body)
    try:
        with zipfile.ZipFile(stream) as zipped:
            total = sum(info.file_size for info in zipped.infolist())
    except _BROKEN as exc:
        raise NpzError(f"not an npz archive ({exc})") from None
    if max_bytes is not None and total > max_bytes:
        raise NpzTooLargeError(
            f"the archive unpacks to {total} bytes, more than the limit of {max_bytes}"
        )
    stream.seek(0)
    out: dict[str, np.ndarray] = {}
    try:
        archive = np.load(stream, allow_pickle=False)
    except _BROKEN as exc:
        raise NpzError(f"not an npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NpzError("not an npz archive (a single .npy array)")
    with archive:
        for name in archive.files:
            try:
                value = archive[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise NpzError("pickled (object) arrays are not read", member=name) from None
                raise NpzError(f"not a .npy array ({exc})", member=name) from None
            except _BROKEN as exc:
                raise NpzError(f"unreadable member ({exc})", member=name) from None
            if not isinstance(value, np.ndarray):
                raise NpzError("not a .npy array", member=name)
            out[name] = value
    return out
