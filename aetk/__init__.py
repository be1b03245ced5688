"""aetk, the autoencoder toolkit: classic autoencoders, fused native kernels, ONNX export."""

from importlib.metadata import PackageNotFoundError, version as _version

from aetk._source_cli import install_source_cli_finder

try:
    __version__ = _version("aetk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

# The CLI lives in cli/ at the top of the repository; the wheel installs it as aetk/cli
# (pyproject.toml, wheel.packages). In a source checkout, aetk.cli is found in cli/ directly.
install_source_cli_finder(__path__)

__all__ = ["__version__"]
