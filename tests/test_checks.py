"""aetk.checks.positive_int: the one positive-integer rule, raised as each caller's error."""

from __future__ import annotations

import numpy as np
import pytest

from aetk.checks import positive_int
from aetk.errors import UserInputError


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(200)])
def test_positive_integers_pass_as_int(value):
    assert positive_int("n", value) == int(value) and type(positive_int("n", value)) is int


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "3", None, [1]])
def test_anything_else_is_refused_naming_the_argument(value):
    with pytest.raises(UserInputError, match=r"^n must be a positive integer, got "):
        positive_int("n", value)


def test_options_none_zero_error_class_and_wording():
    assert positive_int("n", None, allow_none=True) is None
    assert positive_int("n", 0, allow_zero=True) == 0
    with pytest.raises(KeyError):
        positive_int("n", 0, error=KeyError)
    with pytest.raises(UserInputError, match="n must be a positive integer or None, got -2"):
        positive_int("n", -2, allow_none=True)
    with pytest.raises(UserInputError, match="limit must be a positive number of examples, got 0"):
        positive_int("limit", 0, what="a positive number of examples")


def test_the_callers_keep_their_error_types():
    from aetk.data.loading import check_config
    from aetk.data.config import DataConfig
    from aetk.data.source import DataError
    from aetk.evaluate.pca import PCA
    from aetk.models.layers import check_positive_int
    from aetk.models.registry import ModelConfigError
    from aetk.runtime.errors import RuntimeModelError
    from aetk.runtime.session import _positive_int

    with pytest.raises(DataError, match="data.limit must be a positive integer or None, got 0"):
        check_config(DataConfig(path="mnist", limit=0))
    with pytest.raises(ValueError, match="PCA n_components must be a positive integer"):
        PCA(0)
    with pytest.raises(ModelConfigError, match="width must be an integer > 0, got 0"):
        check_positive_int("width", 0)
    with pytest.raises(RuntimeModelError, match="threads must be a positive integer or None"):
        _positive_int("threads", 0)
