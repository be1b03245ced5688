"""``ServeOptions``: everything ``aetk serve`` is told, with every default in one place.

Each field carries its command-line flag in ``metadata["flag"]`` so that a bad value is
reported the way the user typed it (``--max-batch must be >= 1, got 0``). ``cli/serve.py``
builds one from the flags; tests and the benchmark build one directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from aetk.errors import UserInputError

DEVICES_HELP = "auto | cpu | cuda | cuda:N"
PRECISIONS = ("float32", "float16", "int8")


class ServeOptionError(UserInputError):
    """An option of ``aetk serve`` that cannot be used; the message names its flag."""


def _flag(name: str, help: str) -> dict:  # noqa: A002 (the CLI's word)
    return {"flag": name, "help": help}


@dataclass(frozen=True)
class ServeOptions:
    model_dir: Path = field(metadata=_flag("MODEL_DIR", "an `aetk export` folder or a Triton model "
                                                        "repository written by `aetk export --triton`"))
    host: str = field(default="127.0.0.1", metadata=_flag("--host", "address to bind (0.0.0.0: every interface)"))
    port: int = field(default=8000, metadata=_flag("--port", "TCP port; 0 picks a free one (printed at start)"))
    device: str = field(default="auto", metadata=_flag("--device", f"ONNX Runtime device: {DEVICES_HELP}"))
    precision: str = field(default="float32", metadata=_flag("--precision", "export-folder graphs to serve: "
                                                                             "float32, float16 or int8"))
    threads: Optional[int] = field(default=None, metadata=_flag("--threads", "ONNX Runtime intra-op threads "
                                                                              "per model (default: its own)"))
    max_batch: int = field(default=64, metadata=_flag("--max-batch", "rows merged into one ONNX Runtime call "
                                                                      "(1: no batching)"))
    max_queue_delay_ms: float = field(default=2.0, metadata=_flag(
        "--max-queue-delay-ms", "how long the oldest queued request may wait for others to join its batch"))
    preferred_batch: tuple[int, ...] = field(default=(), metadata=_flag(
        "--preferred-batch", "batch sizes run as soon as they are reached (comma-separated)"))
    max_queue: int = field(default=256, metadata=_flag("--max-queue", "requests waiting per model; "
                                                                       "beyond it: 503 with Retry-After"))
    workers: int = field(default=1, metadata=_flag("--workers", "server processes (each loads the models)"))
    max_body_mb: float = field(default=64.0, metadata=_flag("--max-body-mb", "larger request bodies get 413, "
                                                                             "answered before reading them"))
    max_json_mb: float = field(default=8.0, metadata=_flag(
        "--max-json-mb", "larger JSON documents get 413 (send tensors as binary data instead)"))
    max_output_mb: float = field(default=256.0, metadata=_flag(
        "--max-output-mb", "a request whose outputs would be larger gets 413"))
    request_timeout_s: float = field(default=60.0, metadata=_flag(
        "--request-timeout", "seconds a whole request may take, body included (408 / 504 beyond)"))
    token_env: Optional[str] = field(default=None, metadata=_flag(
        "--token-env", "environment variable holding a bearer token every request must carry"))
    token_file: Optional[Path] = field(default=None, metadata=_flag(
        "--token-file", "file holding a bearer token every request must carry"))
    access_log: bool = field(default=True, metadata=_flag("--access-log", "one JSON line per request on stderr"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "preferred_batch", tuple(int(b) for b in self.preferred_batch))
        if self.token_file is not None:
            object.__setattr__(self, "token_file", Path(self.token_file))
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
        for b in self.preferred_batch:
            if not 1 <= b <= self.max_batch:
                raise ServeOptionError(f"--preferred-batch sizes must be between 1 and --max-batch "
                                       f"({self.max_batch}), got {b}")
        if self.token_env is not None and self.token_file is not None:
            raise ServeOptionError("give --token-env or --token-file, not both")

    def _bad(self, name: str, why: str) -> None:
        raise ServeOptionError(f"{flag(name)} {why}, got {getattr(self, name)!r}")

    # -- derived values ------------------------------------------------------------------
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
                raise ServeOptionError(f"--token-env {self.token_env}: that environment variable is unset or empty")
            return value
        if self.token_file is not None:
            try:
                value = self.token_file.read_text().strip()
            except OSError as exc:
                raise ServeOptionError(f"--token-file {self.token_file}: {exc.strerror or exc}") from None
            if not value:
                raise ServeOptionError(f"--token-file {self.token_file} is empty")
            return value
        return None


def flag(name: str) -> str:
    """The command-line flag of ServeOptions field ``name``."""
    return next(f.metadata["flag"] for f in fields(ServeOptions) if f.name == name)


def help_text(name: str) -> str:
    return next(f.metadata["help"] for f in fields(ServeOptions) if f.name == name)


def default(name: str):
    return next(f.default for f in fields(ServeOptions) if f.name == name)


__all__ = ["ServeOptionError", "ServeOptions", "default", "flag", "help_text"]
