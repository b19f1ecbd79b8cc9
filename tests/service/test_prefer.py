"""The ``Prefer: wait`` header (RFC 7240)."""

from __future__ import annotations

import pytest

from qldm.service.prefer import PreferenceError, preferred_wait


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("wait=5", 5.0),
        ("WAIT = 2.5", 2.5),
        ('wait="4"', 4.0),
        ("respond-async, wait=0", 0.0),
        ("return=minimal", None),
        ("wait=10; unknown=1", 10.0),
        ("wait=600", 60.0),  # capped at the server's longest wait
    ],
)
def test_wait_is_read_and_capped(header: str | None, seconds: float | None) -> None:
    assert preferred_wait(header, max_wait_s=60.0) == seconds


@pytest.mark.parametrize(
    "header", ["wait", "wait=", "wait=soon", "wait=-1", "wait=nan", "wait=inf", "wait=1e999"]
)
def test_a_bad_wait_names_the_header(header: str) -> None:
    with pytest.raises(PreferenceError) as info:
        preferred_wait(header, max_wait_s=60.0)
    assert info.value.field == "Prefer" and info.value.code == "validation_error"
