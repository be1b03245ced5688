"""Datasets for training and evaluation: readers for IDX, image folders, .npy/.npz and
CSV, the normalization stored with a model, and named built-in datasets.

    data = load_data(DataConfig(path="fashion-mnist"))
    data.train[0]  -> (x: float32 tensor of data.input_shape, label: int64, -1 if none)

See aetk/data/config.py for the options.
"""

from aetk.data.source import DataError
from aetk.data.config import DataConfig
from aetk.data.loading import LoadedData, load_data
from aetk.normalization import Normalization

__all__ = ["DataConfig", "DataError", "LoadedData", "Normalization", "load_data"]
