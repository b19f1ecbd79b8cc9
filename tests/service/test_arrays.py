"""The npz transport: round trips, refusals, and the cost of encoding a large Jacobian."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest

from qldm.client.service_client import pack as client_pack
from qldm.client.service_client import unpack as client_unpack
from qldm.errors import PayloadTooLargeError, RequestValidationError
from qldm.jobs.model import JobResult
from qldm.jobs.store import pack_result
from qldm.service.arrays import (
    first_non_finite,
    pack,
    unpack,
    with_document,
)


def test_round_trip_is_exact_and_client_and_server_agree() -> None:
    rng = np.random.default_rng(0)
    arrays = {"values": rng.normal(size=(1, 128, 6)), "d_weights": rng.normal(size=(1, 128, 6, 72))}
    doc = {"id": "abc", "metadata": {"shots": None}}
    for writer, reader in (
        (pack, unpack),
        (client_pack, client_unpack),
        (pack, client_unpack),
        (client_pack, unpack),
    ):
        got_doc, got = reader(writer(doc, arrays))
        assert got_doc == doc
        assert set(got) == set(arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(got[name], value)
            assert got[name].dtype == np.float64


def test_the_stored_result_blob_plus_its_document_reads_like_pack() -> None:
    rng = np.random.default_rng(3)
    result = JobResult(
        values=rng.normal(size=(2, 4, 3)),
        d_inputs=rng.normal(size=(2, 4, 3, 5)),
        d_weights=None,
        counts=None,
        metadata={"engine": "statevector"},
    )
    document = {"id": "j1", "status": "succeeded", "counts": None, "metadata": result.metadata}
    for read in (unpack, client_unpack):
        doc, arrays = read(with_document(pack_result(result), document))
        assert doc == document and sorted(arrays) == ["d_inputs", "values"]
        np.testing.assert_array_equal(arrays["values"], result.values)
        np.testing.assert_array_equal(arrays["d_inputs"], result.d_inputs)
    assert (
        unpack(pack(document, {"values": result.values, "d_inputs": result.d_inputs}))[0]
        == unpack(with_document(pack_result(result), document))[0]
    )


def test_none_arrays_are_left_out() -> None:
    _, got = unpack(pack({}, {"values": np.ones(3), "d_inputs": None}))
    assert set(got) == {"values"}


def test_refuses_garbage_and_pickles_and_missing_json() -> None:
    with pytest.raises(RequestValidationError) as info:
        unpack(b"not a zip")
    assert info.value.field == "body"
    buffer = io.BytesIO()
    np.savez(buffer, inputs=np.ones((2, 2)))
    with pytest.raises(RequestValidationError, match="no 'json' entry"):
        unpack(buffer.getvalue())
    buffer = io.BytesIO()
    np.savez(
        buffer,
        allow_pickle=True,
        json=np.frombuffer(b"{}", np.uint8),
        inputs=np.array([{"a": 1}], dtype=object),
    )
    with pytest.raises(RequestValidationError) as info:
        unpack(buffer.getvalue())
    assert info.value.field == "inputs"
    buffer = io.BytesIO()
    np.savez(buffer, json=np.frombuffer(b'{"inputs": [[1]]}', np.uint8), inputs=np.ones((1, 1)))
    with pytest.raises(RequestValidationError) as info:
        unpack(buffer.getvalue())
    assert info.value.field == "inputs"


def test_refuses_archives_that_unpack_beyond_the_limit() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("json.npy", b"x")
        archive.writestr("inputs.npy", b"\0" * 5_000_000)  # deflates to a few kB
    body = buffer.getvalue()
    assert len(body) < 100_000
    with pytest.raises(PayloadTooLargeError):
        unpack(body, max_bytes=1_000_000)


def test_first_non_finite_names_the_path() -> None:
    assert first_non_finite({"a": [1.0, 2.0], "b": {"c": 3}}) is None
    assert first_non_finite({"a": [1.0, [0.0, float("nan")]]}) == "a.1.1"
    assert first_non_finite({"w": [float("inf")]}) == "w.0"
    assert first_non_finite(np.array([[0.0, 1.0], [np.inf, 0.0]]), "inputs") == "inputs.1.0"


def test_encoding_a_b128_jacobian_takes_milliseconds() -> None:
    d_weights = np.random.default_rng(1).normal(size=(1, 128, 6, 72))
    d_inputs = np.random.default_rng(2).normal(size=(1, 128, 6, 6))
    start = time.perf_counter()
    for _ in range(10):
        body = pack(
            {"id": "x"}, {"values": d_weights[..., 0], "d_inputs": d_inputs, "d_weights": d_weights}
        )
        unpack(body)
    per_call = (time.perf_counter() - start) / 10
    assert per_call < 0.05  # the JSON text of the same numbers takes ~10x longer
