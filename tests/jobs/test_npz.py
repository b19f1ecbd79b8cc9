"""The npz codec against numpy's own writer and reader, and its refusals."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from qldm.jobs import npz

RNG = np.random.default_rng(0)
ARRAYS: dict[str, np.ndarray] = {
    "values": RNG.normal(size=(1, 128, 6)),
    "d_weights": RNG.normal(size=(1, 128, 6, 72)),
    "ints": np.arange(7, dtype=np.int32),
    "big_endian": np.arange(3, dtype=">i4"),
    "empty": np.zeros((0, 3)),
    "scalar": np.array(2.5),
    "fortran": np.asfortranarray(RNG.normal(size=(3, 4))),
    "flags": np.array([True, False]),
    "complex": np.array([1 + 2j, -3j]),
    "text": np.frombuffer(b'{"a": 1}', dtype=np.uint8),
    "record": np.zeros(2, dtype=[("a", "<f8"), ("b", "<i4")]),
}


def _numpy_load(body: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _savez(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)


def test_numpy_reads_what_write_writes() -> None:
    _same(_numpy_load(npz.write(ARRAYS)), ARRAYS)


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_read_reads_what_numpy_writes(compressed: bool) -> None:
    _same(npz.read(_savez(compressed, **ARRAYS)), ARRAYS)


def test_round_trip_gives_writable_arrays() -> None:
    got = npz.read(npz.write(ARRAYS))
    _same(got, ARRAYS)
    assert all(a.flags.writeable for a in got.values())
    got["values"][0, 0, 0] = 7.0  # the arrays share one private copy of the body


def test_append_keeps_the_members_and_adds_new_ones() -> None:
    extra = {"json": np.frombuffer(b"{}", dtype=np.uint8)}
    for archive in (npz.write(ARRAYS), _savez(**ARRAYS)):
        appended = npz.append(archive, extra)
        assert appended.startswith(archive[:100])
        _same(_numpy_load(appended), {**ARRAYS, **extra})
        _same(npz.read(appended), {**ARRAYS, **extra})
    with pytest.raises(npz.NpzError) as info:
        npz.append(npz.write(ARRAYS), {"values": np.ones(1)})
    assert info.value.member == "values"


def test_a_corrupt_member_is_named() -> None:
    body = bytearray(npz.write({"a": np.ones(4), "b": np.zeros(1000)}))
    body[-300] ^= 0xFF  # inside b's data (the directory is the last ~180 bytes)
    with pytest.raises(npz.NpzError, match="CRC") as info:
        npz.read(bytes(body))
    assert info.value.member == "b"


def test_pickles_garbage_and_bad_members_are_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=True, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(npz.NpzError, match="pickled") as info:
        npz.read(buffer.getvalue())
    assert info.value.member == "obj"
    with pytest.raises(npz.NpzError, match="not an npz archive") as info:
        npz.read(b"not a zip at all")
    assert info.value.member is None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00")
    with pytest.raises(npz.NpzError) as info:
        npz.read(buffer.getvalue())
    assert info.value.member == "x"
    with pytest.raises(npz.NpzError):
        npz.write({"obj": np.array([None], dtype=object)})


def test_the_size_limit_is_checked_before_reading() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", b"\0" * 5_000_000)  # deflates to a few kB
    body = buffer.getvalue()
    assert len(body) < 100_000
    with pytest.raises(npz.NpzTooLargeError):
        npz.read(body, max_bytes=1_000_000)


def test_remembered_headers_are_numpy_s_own() -> None:
    for array in [*ARRAYS.values(), np.zeros(6)[::2], np.ones((2, 3), order="F")[:, :2]]:
        header = io.BytesIO()
        fields = np.lib.format.header_data_from_array_1_0(array)
        np.lib.format.write_array_header_1_0(header, fields)
        assert npz._npy(array) == header.getvalue(), array


def test_headers_that_promise_more_than_the_member_holds_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        header = io.BytesIO()
        fields = {"descr": "<f8", "fortran_order": False, "shape": (10**15,)}  # 8 PB
        np.lib.format.write_array_header_1_0(header, fields)
        archive.writestr("huge.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(npz.NpzError) as info:
        npz.read(buffer.getvalue(), max_bytes=1_000_000)
    assert info.value.member == "huge"


def test_members_that_are_not_arrays_are_refused() -> None:
    extra = io.BytesIO(npz.write({"a": np.ones(3)}))
    with zipfile.ZipFile(extra, "a") as archive:
        archive.writestr("notes.txt", b"not an array")  # numpy.load hands back its bytes
    with pytest.raises(npz.NpzError) as info:
        npz.read(extra.getvalue())
    assert info.value.member == "notes.txt"
