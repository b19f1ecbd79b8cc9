"""The array fields of ``JobRequest``: float64 numpy arrays from JSON lists or from ndarrays
(npz), checked for dimensions, dtype and finiteness, serialized as lists; the fingerprint of a
request is the one it had when these fields were lists."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

from qldm.errors import InvalidSpecError
from qldm.jobs.model import JobRequest
from qldm.jobs.store import JobStore

FIXED: dict[str, Any] = {
    "circuit": {
        "n_qubits": 2,
        "layers": 1,
        "channel": {"kind": "amplitude_damping", "strength": 0.05},
    },
    "task": "jacobian",
    "inputs": [[0.1, -0.2], [0.3, 1e-300], [2.5, -3.0]],
    "weights": [0.5, 0.6, 0.7, 0.8],
    "noise_levels": [0.0, 0.05],
    "seed": 7,
    "options": {"chunk_size": 2},
}
INTEGERS: dict[str, Any] = {
    "circuit": {"n_qubits": 1, "ansatz": "basic_entangler"},
    "inputs": [[1]],
    "weights": [0],
}
# JobRequest.parse(...).fingerprint() computed by the tree before the arrays (d0e4caf), when
# these fields were list[list[float]] and list[float]
FIXED_FINGERPRINT = "c91a9e60ef33d8da949ee1ce4c03bb1e0d599cc46a45929534e31bd24a5cc465"
INTEGERS_FINGERPRINT = "54928d3ea4f41135f920308d846b109e75a01ae90a72875f7602dbe22acce544"


def _with_arrays(body: dict[str, Any], dtype: Any = np.float64) -> dict[str, Any]:
    out = dict(body)
    for name in ("inputs", "weights", "noise_levels"):
        if name in out:
            out[name] = np.asarray(out[name], dtype=dtype)
    return out


def test_the_fingerprint_is_the_one_of_the_list_fields() -> None:
    assert JobRequest.parse(FIXED).fingerprint() == FIXED_FINGERPRINT
    assert JobRequest.parse(INTEGERS).fingerprint() == INTEGERS_FINGERPRINT
    # the same numbers as arrays (as an npz body brings them), any real dtype
    assert JobRequest.parse(_with_arrays(FIXED)).fingerprint() == FIXED_FINGERPRINT
    assert JobRequest.parse(_with_arrays(INTEGERS, np.int32)).fingerprint() == INTEGERS_FINGERPRINT
    # and after a trip through JSON text
    again = JobRequest.parse(JobRequest.parse(FIXED).model_dump_json())
    assert again.fingerprint() == FIXED_FINGERPRINT


def test_the_fields_are_float64_arrays_and_json_lists() -> None:
    req = JobRequest.parse(FIXED)
    for name, shape in (("inputs", (3, 2)), ("weights", (4,)), ("noise_levels", (2,))):
        value = getattr(req, name)
        assert isinstance(value, np.ndarray) and value.dtype == np.float64, name
        assert value.shape == shape and value.flags.c_contiguous, name
        np.testing.assert_array_equal(value, FIXED[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no serializer warnings either
        assert isinstance(req.model_dump()["inputs"], np.ndarray)  # python mode keeps arrays
        dumped = json.loads(req.model_dump_json())
    assert dumped["inputs"] == FIXED["inputs"] and dumped["weights"] == FIXED["weights"]
    assert req.model_dump(mode="json")["noise_levels"] == [0.0, 0.05]
    assert req.n_samples == 3 and req.n_levels == 2
    assert req.arrays()["inputs"] is req.inputs  # no copy on the way to the store
    assert req.workload().inputs.shape == (3, 2)


def test_equality_compares_the_numbers() -> None:
    req = JobRequest.parse(FIXED)
    assert req == JobRequest.parse(_with_arrays(FIXED))
    assert req != JobRequest.parse({**FIXED, "weights": [0.5, 0.6, 0.7, 0.81]})
    assert req != JobRequest.parse({**FIXED, "noise_levels": None})
    assert req != JobRequest.parse({**FIXED, "noise_levels": [0.0]})


def test_an_array_is_copied_so_the_caller_cannot_change_the_request() -> None:
    inputs = np.array(FIXED["inputs"])
    req = JobRequest.parse({**FIXED, "inputs": inputs})
    inputs[0, 0] = 9.0
    assert req.inputs[0, 0] == 0.1 and req.fingerprint() == FIXED_FINGERPRINT


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"inputs": [[0.1, 0.2], [0.3]]}, "inputs", "not an array of numbers"),
        ({"inputs": [0.1, 0.2]}, "inputs.0", "valid list"),
        ({"inputs": np.ones(2)}, "inputs", "2-D"),
        ({"inputs": np.ones((1, 2, 1))}, "inputs", "2-D"),
        ({"inputs": [[0.1, float("nan")], [0.1, 0.2], [0.1, 0.2]]}, "inputs", "NaN"),
        ({"inputs": np.ones((3, 2), dtype=complex)}, "inputs", "real numbers"),
        ({"inputs": np.array([["a", "b"]])}, "inputs", "real numbers"),
        ({"weights": ["a", 0, 0, 0]}, "weights.0", "valid number"),
        ({"weights": np.ones((4, 1))}, "weights", "1-D"),
        ({"weights": [0.5, 0.6, 0.7, float("inf")]}, "weights", "NaN"),
        ({"noise_levels": np.array([[0.1]])}, "noise_levels", "1-D"),
        ({"noise_levels": "0.1"}, "noise_levels", "valid list"),
    ],
)
def test_bad_arrays_name_the_field(change: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message) as info:
        JobRequest.parse({**FIXED, **change})
    assert info.value.field == field


def test_the_store_gives_back_arrays_and_the_same_fingerprint(sqlite_url: str) -> None:
    store = JobStore(sqlite_url)
    store.migrate()
    try:
        job, _ = store.submit(tenant="t", request=JobRequest.parse(_with_arrays(FIXED)))
        back = store.request(job.id)
        assert isinstance(back.inputs, np.ndarray) and back.inputs.dtype == np.float64
        assert back == JobRequest.parse(FIXED) and back.fingerprint() == FIXED_FINGERPRINT
        with store.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT request_hash FROM qldm_jobs").scalar_one()
        assert stored == FIXED_FINGERPRINT
    finally:
        store.close()


def test_the_json_schema_still_says_lists_of_numbers() -> None:
    schema = JobRequest.model_json_schema()["properties"]
    assert schema["inputs"]["type"] == "array"
    assert schema["inputs"]["items"] == {"type": "array", "items": {"type": "number"}}
    assert schema["weights"]["items"] == {"type": "number"}
