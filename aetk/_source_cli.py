"""``import aetk.cli`` from a source checkout, with no copy and no link.

The command line lives in ``cli/`` at the top of the repository (beside ``aetk/``). The wheel
maps it to ``aetk/cli`` (``[tool.scikit-build.wheel.packages]`` in pyproject.toml), so an
installed aetk never uses this module. In a source checkout there is no ``aetk/cli``: a finder,
consulted only after the normal ones fail and only for the name ``aetk.cli``, loads it from
``../cli``. Nothing else of the repository becomes importable under ``aetk``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

CLI_PACKAGE = "aetk.cli"


class SourceCliFinder(importlib.abc.MetaPathFinder):
    """Finds ``aetk.cli`` in a checkout's ``cli/`` folder (its submodules then follow the
    package's own ``__path__``, as for any package)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != CLI_PACKAGE:
            return None
        return importlib.util.spec_from_file_location(
            name, self.folder / "__init__.py", submodule_search_locations=[str(self.folder)])


def source_cli_folder(package_path: Iterable[str]) -> Path | None:
    """``cli/`` beside the package folder when this is a source checkout without ``aetk/cli``
    (a checkout has pyproject.toml beside them), else None."""
    for entry in package_path:
        package = Path(entry)
        root = package.parent
        if (package / "cli").exists():
            return None  # installed (or an old dev link): the normal import finds it
        if (root / "cli" / "__init__.py").is_file() and (root / "pyproject.toml").is_file():
            return root / "cli"
    return None


def install_source_cli_finder(package_path: Iterable[str]) -> None:
    folder = source_cli_folder(package_path)
    if folder is None:
        return
    if any(isinstance(f, SourceCliFinder) for f in sys.meta_path):
        return
    sys.meta_path.append(SourceCliFinder(folder))
