"""Errors of ``aetk compress`` / ``decompress`` / ``neighbors``; each names the argument or
file at fault and what would have been valid. All are UserInputErrors (exit 2) or, for
bytes that disagree with their checksum, IntegrityErrors (exit 3); both are ValueErrors, so
a caller can catch one class. Failures of the disk itself stay OSErrors."""

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


class UnsafeManifestError(IntegrityError, CompressError):
    """A manifest that was edited after it was written (its own checksum disagrees), or that
    names a path outside its folder (``../``, an absolute path) or a model it was not made by."""


class OutputExistsError(CompressError):
    """Decompressing would replace files: the data's own source, or (without --overwrite)
    files already in the output folder."""


__all__ = ["CompressError", "CorruptShardError", "IncompleteCodesError", "OutputExistsError",
           "ShapeMismatchError", "StaleCodesError", "UnsafeManifestError"]
