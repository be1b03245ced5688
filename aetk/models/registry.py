"""One registry of model kinds, keyed by name. The CLI's choices are its keys.

    @register_model("deep")
    class DeepAutoencoder(Autoencoder): ...

    model = create_model("deep", input_shape=(784,), widths=[1000, 500, 250, 30])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

from aetk.errors import UserInputError

MODELS: dict[str, type] = {}
T = TypeVar("T")


class ModelConfigError(UserInputError):
    """A model kind or hyperparameter that is not valid (model.kind, model.* options)."""


def register_model(name: str) -> Callable[[type[T]], type[T]]:
    def wrap(cls: type[T]) -> type[T]:
        if name in MODELS:
            raise ValueError(f"model kind {name!r} is registered twice ({MODELS[name]} and {cls})")
        cls.kind = name  # type: ignore[attr-defined]
        MODELS[name] = cls
        return cls

    return wrap


def model_names() -> list[str]:
    _load_builtin_models()
    return sorted(MODELS)


def model_class(name: str) -> type:
    _load_builtin_models()
    if name not in MODELS:
        raise ModelConfigError(f"unknown model kind {name!r}; valid kinds: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def config_fields(name: str) -> list[str]:
    """The hyperparameter names a kind accepts (fields of its Config dataclass)."""
    return [f.name for f in dataclasses.fields(model_class(name).Config)]


def make_config(name: str, params: dict[str, Any]):
    """The kind's Config from a dict, with an error listing valid keys for unknown ones."""
    cls = model_class(name)
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ModelConfigError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    return cls.Config(**params)


def create_model(name: str, input_shape: tuple[int, ...], **params: Any):
    """Build a registered model for inputs of shape ``input_shape`` (no batch dimension)."""
    cls = model_class(name)
    return cls(make_config(name, params), tuple(input_shape))


def _load_builtin_models() -> None:
    # Importing the package registers every built-in kind.
    import aetk.models  # noqa: F401
