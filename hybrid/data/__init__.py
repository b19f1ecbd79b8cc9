"""Image data sets for qldm's seed models.

``load_dataset(name, split=..., subset=..., image_size=...)`` returns an :class:`ImageDataset`
(images ``(N, C, H, W)`` ``float32`` in ``[0, 1]``, labels ``(N,)`` ``int64``). See
:mod:`qldm.hybrid.data._registry` for the registered names, their files and their splits.
"""

from qldm.hybrid.data._dataset import ImageDataset
from qldm.hybrid.data._errors import DatasetError, DatasetNotFoundError
from qldm.hybrid.data._registry import DATASETS, SPLIT_SEED, default_data_root, load_dataset

__all__ = [
    "DATASETS",
    "SPLIT_SEED",
    "DatasetError",
    "DatasetNotFoundError",
    "ImageDataset",
    "default_data_root",
    "load_dataset",
]
