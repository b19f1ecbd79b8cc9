"""The ``.npz`` container, written and read without ``numpy.savez``/``numpy.load``'s overhead.

Every array qldm stores or sends (a request's inputs, a result's Jacobians, the HTTP binary
transport) is an npz archive: a zip whose members ``<name>.npy`` each hold one array in NumPy's
``.npy`` format. :func:`write` builds one in a single pass (member headers, CRC-32, central
directory), :func:`read` takes the arrays straight out of the archive's bytes, and
:func:`append` adds members to an archive without touching the ones it has. The files are
ordinary npz files: ``numpy.load`` reads what :func:`write` writes, and :func:`read` reads what
``numpy.savez`` and ``numpy.savez_compressed`` write (deflated members are inflated through
:mod:`zipfile`). For a B = 128 Jacobian (0.5 MB) this is about a third of the time of the numpy
functions, which go through :mod:`zipfile`'s streaming writer and reader for every member.

Pickled (object) arrays are never read.

Measured against ``numpy.savez``/``numpy.load(allow_pickle=False)`` in their place (side by
side, ``qldm bench service --against``, 150 B = 128 Jacobian jobs per tree and run): the server
added 3.1, 4.6 and 3.3 ms more per job (p50) with numpy's, whose ``.npy`` header parser and
member streams copy and parse more per array; so this module stays.
"""

from __future__ import annotations

import functools
import io
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["NpzError", "NpzTooLargeError", "append", "read", "write"]

_LOCAL = struct.Struct("<4s5H3L2H")  # signature, versions/flags/method/time/date, crc, sizes
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_LOCAL_SIG, _CENTRAL_SIG, _END_SIG = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
_DOS_TIME, _DOS_DATE = 0, (1 << 5) | 1  # 1980-01-01 00:00, as numpy.savez writes
_LIMIT = 0xFFFF_FFFF  # past this a member needs zip64: numpy.savez writes those


class NpzError(ValueError):
    """The bytes are not an npz archive qldm can read (with ``member`` set when one is bad)."""

    def __init__(self, message: str, *, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


class NpzTooLargeError(NpzError):
    """The archive's members unpack to more bytes than the reader allows."""


def _npy(array: np.ndarray) -> bytes:
    """The ``.npy`` header of ``array`` (version 1.0, as ``numpy.save`` writes it).

    Headers of plain dtypes are remembered by (dtype, order, shape): numpy's header writer is
    Python code that took ~0.1 ms per array on a server that sat idle (a job packs some seven
    arrays on its way), against a dictionary look-up."""
    dtype = array.dtype
    if dtype.names is None and dtype.subdtype is None and dtype.metadata is None:
        # numpy.lib.format.header_data_from_array_1_0's fields, for such a dtype
        fortran = not array.flags.c_contiguous and array.flags.f_contiguous
        return _plain_npy(dtype.str, bool(fortran), array.shape)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.getvalue()


@functools.lru_cache(maxsize=1024)
def _plain_npy(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
    header = io.BytesIO()
    fields = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(header, fields)
    return header.getvalue()


def write(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An npz archive of ``arrays`` (uncompressed, members in the given order).

    Args:
        arrays: member name (without ``.npy``) to array; each is written C-contiguous, and
            object arrays are refused.

    Returns:
        The archive's bytes, as ``numpy.savez`` would write them.

    Raises:
        NpzError: an object array (it would need pickling).
    """
    prepared = []
    for name, value in arrays.items():
        array = np.asarray(value, order="C")
        if array.dtype.hasobject:
            raise NpzError("object arrays are not written", member=name)
        prepared.append((name, array))
    if sum(a.nbytes for _, a in prepared) >= _LIMIT:  # pragma: no cover - 4 GiB
        buffer = io.BytesIO()
        np.savez(buffer, **dict(prepared))  # type: ignore[arg-type]
        return buffer.getvalue()
    return _members(prepared, start=0, central=b"", count=0, head=b"")


def _members(
    prepared: list[tuple[str, np.ndarray]],
    *,
    start: int,
    central: bytes,
    count: int,
    head: bytes | memoryview,
) -> bytes:
    """``head`` (an archive's members, ending at offset ``start``), then ``prepared`` as new
    members, then the central directory: ``central`` (the old entries) and the new ones."""
    parts: list[bytes | memoryview] = [head]
    entries = [central]
    offset = start
    for name, array in prepared:
        filename = f"{name}.npy".encode()
        header = _npy(array)
        data = array.data.cast("B") if array.nbytes else memoryview(b"")
        crc = zlib.crc32(data, zlib.crc32(header))
        size = len(header) + array.nbytes
        local = _LOCAL.pack(
            _LOCAL_SIG, 20, 0, 0, _DOS_TIME, _DOS_DATE, crc, size, size, len(filename), 0
        )
        entries.append(
            _CENTRAL.pack(
                _CENTRAL_SIG,
                20,
                20,
                0,
                0,
                _DOS_TIME,
                _DOS_DATE,
                crc,
                size,
                size,
                len(filename),
                0,
                0,
                0,
                0,
                0o600 << 16,
                offset,
            )
            + filename
        )
        parts += [local, filename, header, data]
        offset += len(local) + len(filename) + size
    directory = b"".join(entries)
    count += len(prepared)
    end = _END.pack(_END_SIG, 0, 0, count, count, len(directory), offset, 0)
    return b"".join([*parts, directory, end])


def append(archive: bytes, arrays: Mapping[str, np.ndarray]) -> bytes:
    """``archive`` (written by :func:`write` or ``numpy.savez``) with ``arrays`` added as
    more members; the members it has are copied as they are, not re-encoded.

    Raises:
        NpzError: ``archive`` has no plain end record (a zip64 archive, over 4 GiB, or one
            with a comment), or a name is taken.
    """
    end = archive.rfind(_END_SIG)
    if end < 0 or len(archive) - end != _END.size:
        raise NpzError("no plain zip end record: not an archive jobs.npz can append to")
    _, _, _, _, count, size, at, _ = _END.unpack_from(archive, end)
    names = {info.filename[:-4] for info in _infos(archive)}
    taken = names & set(arrays)
    if taken:
        raise NpzError(f"{sorted(taken)} are in the archive already", member=sorted(taken)[0])
    prepared = [(name, np.asarray(value, order="C")) for name, value in arrays.items()]
    view = memoryview(archive)  # the members are copied once, into the new archive
    return _members(
        prepared, start=at, central=bytes(view[at : at + size]), count=count, head=view[:at]
    )


def _open(body: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(body))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise NpzError(f"not an npz archive ({exc})") from None


def _infos(body: bytes) -> list[zipfile.ZipInfo]:
    with _open(body) as archive:
        return archive.infolist()


def read(body: bytes, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an npz archive, by member name without ``.npy``.

    Stored members are read in place (their CRC-32 checked); deflated ones are inflated by
    :mod:`zipfile`, which stops at the size the directory declares. The arrays are views of
    one writable copy of ``body``.

    Args:
        body: the archive.
        max_bytes: refuse archives whose members unpack to more than this, before reading.

    Raises:
        NpzTooLargeError: the members unpack to more than ``max_bytes``.
        NpzError: not a zip archive, a member that is not a ``.npy`` array, a pickled
            (object) array, or a CRC mismatch (``member`` names it).
    """
    out: dict[str, np.ndarray] = {}
    with _open(body) as archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if max_bytes is not None and total > max_bytes:
            raise NpzTooLargeError(
                f"the archive unpacks to {total} bytes, more than the limit of {max_bytes}"
            )
        buffer = bytearray(body)
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if info.compress_type == zipfile.ZIP_STORED:
                out[name] = _stored(buffer, info, name)
                continue
            try:
                data = bytearray(archive.read(info))
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
                raise NpzError(f"unreadable member ({exc})", member=name) from None
            out[name] = _array(data, 0, len(data), name)
    return out


def _stored(buffer: bytearray, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    at = info.header_offset
    if buffer[at : at + 4] != _LOCAL_SIG:
        raise NpzError("bad member header", member=name)
    name_len, extra_len = struct.unpack_from("<2H", buffer, at + 26)
    start = at + _LOCAL.size + name_len + extra_len
    stop = start + info.file_size
    if stop > len(buffer):
        raise NpzError("the member runs past the end of the archive", member=name)
    if zlib.crc32(memoryview(buffer)[start:stop]) != info.CRC:
        raise NpzError("CRC-32 mismatch: the member is corrupt", member=name)
    return _array(buffer, start, stop, name)


_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), "
    rb"'shape': \(((?:\d+, )*\d*,?)\), \} *\n"
)


def _parse_header(text: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any]] | None:
    """``(shape, fortran_order, dtype)`` of a ``.npy`` header as ``numpy.save`` writes it
    for a plain dtype, or ``None`` for anything else (numpy's parser, which evaluates the
    header as a Python literal, takes it then: it costs about 0.1 ms an array)."""
    match = _HEADER.fullmatch(text)
    if match is None:
        return None
    descr, fortran, dims = match.groups()
    shape = tuple(int(d) for d in dims.replace(b" ", b"").split(b",") if d)
    try:
        dtype = np.dtype(descr.decode())
    except TypeError:
        return None
    return shape, fortran == b"True", dtype


def _array(buffer: bytearray, start: int, stop: int, name: str) -> np.ndarray:
    """The ``.npy`` array in ``buffer[start:stop]``, as a view of ``buffer``."""
    # magic (6 bytes), version (2), header length (2 bytes in version 1, else 4), header
    prefix = 10 if buffer[start + 6 : start + 7] == b"\x01" else 12
    if stop - start < prefix:
        raise NpzError("not a .npy array (too short)", member=name)
    length = int.from_bytes(buffer[start + 8 : start + prefix], "little")
    text = bytes(buffer[start + prefix : min(stop, start + prefix + length)])
    header = _parse_header(text)
    if header is None:  # not as numpy.save writes it: numpy's own (slower) parser
        head = io.BytesIO(bytes(buffer[start : min(stop, start + prefix + length)]))
        try:
            version = np.lib.format.read_magic(head)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(head)
            else:
                header = np.lib.format.read_array_header_2_0(head)
        except (ValueError, SyntaxError) as exc:
            raise NpzError(f"not a .npy array ({exc})", member=name) from None
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise NpzError("pickled (object) arrays are not read", member=name)
    count = math.prod(shape)
    offset = start + prefix + length
    if offset + count * dtype.itemsize != stop:
        raise NpzError("the array's size does not match its header", member=name)
    flat = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset)
    if fortran:
        return flat.reshape(shape[::-1]).T
    return flat.reshape(shape)
