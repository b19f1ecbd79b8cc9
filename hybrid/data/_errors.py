"""Errors raised by :mod:`qldm.hybrid.data`."""

from __future__ import annotations

from qldm.errors import QldmError


class DatasetError(QldmError, ValueError):
    """A data set name, split, subset size or image size is invalid, or a file is malformed."""

    code = "invalid_dataset"


class DatasetNotFoundError(QldmError, FileNotFoundError):
    """The files of a data set are not where they were expected (and could not be downloaded)."""

    code = "dataset_not_found"
