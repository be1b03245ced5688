"""What ``aetk serve`` is told: one frozen dataclass, its defaults, flags and help texts.

    create_app(ServeOptions(Path("out"), max_batch=128, max_queue_delay_ms=2))

Each flagged field is built with ``aetk.options.option`` (default, flag, help), so
``cli/serve.py`` builds its Typer options from these fields (``@with_options(ServeOptions)``)
and a bad value is reported the way the user typed it (``--max-batch must be >= 1, got 0``).
``model_dir`` is the command's argument (MODEL_DIR), not a flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from aetk import options as _options
from aetk.errors import UserInputError
from aetk.options import option

DEVICES_HELP = "auto | cpu | cuda | cuda:N"
PRECISIONS = ("float32", "float16", "int8")
MODEL_DIR_HELP = "an `aetk export` folder or a Triton model repository written by `aetk export --triton`"


class ServeOptionError(UserInputError):
    """An option of ``aetk serve`` that cannot be used; the message names its flag."""


@dataclass(frozen=True)
class ServeOptions:
    # The folder to serve: the command's argument, so it has no flag; None only while the CLI
    # builds the options from its flags (a ServeOptions without it cannot serve: see .folder).
    model_dir: Optional[Path] = field(default=None, metadata={"help": MODEL_DIR_HELP})
    host: str = option("127.0.0.1", "--host", "address to bind (0.0.0.0: every interface)")
    port: int = option(8000, "--port", "TCP port; 0 picks a free one (printed at start)")
    device: str = option("auto", "--device", f"ONNX Runtime device: {DEVICES_HELP}")
    precision: str = option("float32", "--precision", "export-folder graphs to serve: float32, float16 or int8")
    threads: Optional[int] = option(None, "--threads", "ONNX Runtime intra-op threads per model (default: its own)")
    max_batch: int = option(64, "--max-batch", "rows merged into one ONNX Runtime call (1: no batching)")
    max_queue_delay_ms: float = option(2.0, "--max-queue-delay-ms", "how long the oldest queued request may wait "
                                       "for others to join its batch")
    # (the CLI takes it as comma-separated text: cli/serve.py parses it)
    preferred_batch: tuple[int, ...] = option((), "--preferred-batch", "batch sizes run as soon as they are "
                                              "reached (comma-separated)")
    max_queue: int = option(256, "--max-queue", "requests waiting per model; beyond it: 503 with Retry-After")
    workers: int = option(1, "--workers", "server processes (each loads the models)")
    max_body_mb: float = option(64.0, "--max-body-mb", "larger request bodies get 413, answered before reading them")
    max_json_mb: float = option(8.0, "--max-json-mb", "larger JSON documents get 413 (send tensors as binary data "
                                "instead)")
    max_output_mb: float = option(256.0, "--max-output-mb", "a request whose outputs would be larger gets 413")
    request_timeout_s: float = option(60.0, "--request-timeout", "seconds a whole request may take, body included "
                                      "(408 / 504 beyond)")
    token_env: Optional[str] = option(None, "--token-env", "environment variable holding a bearer token every "
                                      "request must carry")
    token_file: Optional[Path] = option(None, "--token-file", "file holding a bearer token every request must carry")
    # (the CLI adds --no-access-log: cli/serve.py)
    access_log: bool = option(True, "--access-log", "one JSON line per request on stderr")

    def __post_init__(self) -> None:
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "preferred_batch", tuple(int(b) for b in self.preferred_batch))
        if self.token_file is not None:
            object.__setattr__(self, "token_file", Path(self.token_file))
        self._check_ranges()
        self._check_combinations()

    def _check_ranges(self) -> None:
        if not 0 <= self.port <= 65535:
            self._bad("port", "must be between 0 and 65535")
        if self.precision not in PRECISIONS:
            self._bad("precision", f"must be one of {', '.join(PRECISIONS)}")
        for name in ("max_batch", "max_queue", "workers"):
            if getattr(self, name) < 1:
                self._bad(name, "must be >= 1")
        if self.threads is not None and self.threads < 1:
            self._bad("threads", "must be >= 1")
        if not self.max_queue_delay_ms >= 0:
            self._bad("max_queue_delay_ms", "must be >= 0")
        for name in ("max_body_mb", "max_json_mb", "max_output_mb", "request_timeout_s"):
            if not getattr(self, name) > 0:
                self._bad(name, "must be > 0")

    def _check_combinations(self) -> None:
        for b in self.preferred_batch:
            if not 1 <= b <= self.max_batch:
                raise ServeOptionError(f"{flag('preferred_batch')} sizes must be between 1 and {flag('max_batch')} "
                                       f"({self.max_batch}), got {b}")
        if self.token_env is not None and self.token_file is not None:
            raise ServeOptionError(f"give {flag('token_env')} or {flag('token_file')}, not both")

    def _bad(self, name: str, why: str) -> None:
        raise ServeOptionError(f"{flag(name)} {why}, got {getattr(self, name)!r}")

    # -- derived values ------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """``model_dir``, which serving needs."""
        if self.model_dir is None:
            raise ServeOptionError("no MODEL_DIR: ServeOptions(model_dir=...) names the folder to serve")
        return self.model_dir

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 2**20)

    @property
    def max_output_bytes(self) -> int:
        return int(self.max_output_mb * 2**20)

    def token(self) -> Optional[str]:
        """The bearer token requests must carry, or None (no authentication)."""
        if self.token_env is not None:
            value = os.environ.get(self.token_env, "").strip()
            if not value:
                raise ServeOptionError(f"{flag('token_env')} {self.token_env}: that environment variable is unset "
                                       f"or empty")
            return value
        if self.token_file is not None:
            try:
                value = self.token_file.read_text().strip()
            except OSError as exc:
                raise ServeOptionError(f"{flag('token_file')} {self.token_file}: {exc.strerror or exc}") from None
            if not value:
                raise ServeOptionError(f"{flag('token_file')} {self.token_file} is empty")
            return value
        return None


def flag(name: str) -> str:
    """The command-line flag of ServeOptions field ``name``: ``aetk.options.flag(ServeOptions, name)``."""
    return _options.flag(ServeOptions, name)


def help_text(name: str) -> str:
    """The help text of ServeOptions field ``name`` (what ``aetk serve --help`` shows)."""
    return next(f.metadata["help"] for f in fields(ServeOptions) if f.name == name)


def default(name: str):
    """The default of ServeOptions field ``name``."""
    return next(f.default for f in fields(ServeOptions) if f.name == name)


__all__ = ["ServeOptionError", "ServeOptions", "default", "flag", "help_text"]
