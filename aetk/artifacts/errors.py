"""Errors about saved folders. Standard library only (``aetk.runtime`` may import this package).

``ArtifactError``: a path that is not the kind of folder asked for (exit 2). The codes-folder
errors live here because ``CodesDir`` raises them; ``aetk.compress.errors`` re-exports them
under the same names (a codes folder is what `aetk compress` writes)."""

from __future__ import annotations

from aetk.errors import IntegrityError, UserInputError


class ArtifactError(UserInputError):
    """A path that is not the saved folder expected (names the path and what was expected)."""


class CompressError(UserInputError):
    """Options, data or a codes folder that cannot be used as asked."""


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


__all__ = ["ArtifactError", "CompressError", "CorruptShardError", "IncompleteCodesError", "UnsafeManifestError"]
