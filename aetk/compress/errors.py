"""Errors of ``aetk compress`` / ``decompress`` / ``neighbors``; each names the argument or
file at fault and what would have been valid. All are UserInputErrors (exit 2) or, for
bytes that disagree with their checksum, IntegrityErrors (exit 3); both are ValueErrors, so
a caller can catch one class. Failures of the disk itself stay OSErrors."""

from __future__ import annotations

from aetk.artifacts.errors import (CompressError, CorruptShardError, IncompleteCodesError,  # noqa: F401
                                   UnsafeManifestError)


class ShapeMismatchError(CompressError):
    """The data's examples do not have the shape the model's encoder takes."""


class StaleCodesError(CompressError):
    """The codes folder holds shards of another job (model, preprocessing or settings)."""


class OutputExistsError(CompressError):
    """Decompressing would replace files: the data's own source, or (without --overwrite)
    files already in the output folder."""


__all__ = ["CompressError", "CorruptShardError", "IncompleteCodesError", "OutputExistsError",
           "ShapeMismatchError", "StaleCodesError", "UnsafeManifestError"]
