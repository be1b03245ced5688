"""Errors of ``aetk compress`` / ``decompress`` / ``neighbors``; each names the argument or
file at fault and what would have been valid. All are ValueErrors (bad input), so a
caller can catch one class; failures of the disk itself stay OSErrors."""

from __future__ import annotations

from aetk.errors import IntegrityError, UserInputError


class CompressError(UserInputError):
    """Options, data or a codes folder that cannot be used as asked."""


class ShapeMismatchError(CompressError):
    """The data's examples do not have the shape the model's encoder takes."""


class StaleCodesError(CompressError):
    """The codes folder holds shards of another job (model, preprocessing or settings)."""


class IncompleteCodesError(CompressError):
    """A codes folder without a complete manifest (a compress run that did not finish)."""


class CorruptShardError(IntegrityError, CompressError):
    """Shards (or model files) whose bytes do not match the manifest's checksums."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


__all__ = ["CompressError", "CorruptShardError", "IncompleteCodesError", "ShapeMismatchError",
           "StaleCodesError"]
