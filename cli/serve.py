"""``aetk serve``: an export folder or a Triton repository on the Open Inference Protocol.

    aetk serve out/                                  # http://127.0.0.1:8000/v2/models/encoder/infer
    aetk serve repo/ --host 0.0.0.0 --max-batch 128 --max-queue-delay-ms 2 --workers 2

The work is done by ``aetk.serve``; every default lives in ``aetk.serve.options.ServeOptions``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from aetk.serve.options import ServeOptionError, ServeOptions, default, help_text

_D = default


def _preferred(values: List[str]) -> tuple[int, ...]:
    out = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError:
                    raise ServeOptionError(f"--preferred-batch takes integers, got {part.strip()!r}") from None
    return tuple(out)


def serve_cli(
    model_dir: Path = typer.Argument(..., help=help_text("model_dir")),
    host: str = typer.Option(_D("host"), "--host", help=help_text("host")),
    port: int = typer.Option(_D("port"), "--port", help=help_text("port")),
    device: str = typer.Option(_D("device"), "--device", help=help_text("device")),
    precision: str = typer.Option(_D("precision"), "--precision", help=help_text("precision")),
    threads: Optional[int] = typer.Option(_D("threads"), "--threads", help=help_text("threads")),
    max_batch: int = typer.Option(_D("max_batch"), "--max-batch", help=help_text("max_batch")),
    max_queue_delay_ms: float = typer.Option(_D("max_queue_delay_ms"), "--max-queue-delay-ms",
                                             help=help_text("max_queue_delay_ms")),
    preferred_batch: List[str] = typer.Option([], "--preferred-batch", help=help_text("preferred_batch")),
    max_queue: int = typer.Option(_D("max_queue"), "--max-queue", help=help_text("max_queue")),
    workers: int = typer.Option(_D("workers"), "--workers", help=help_text("workers")),
    max_body_mb: float = typer.Option(_D("max_body_mb"), "--max-body-mb", help=help_text("max_body_mb")),
    max_json_mb: float = typer.Option(_D("max_json_mb"), "--max-json-mb", help=help_text("max_json_mb")),
    max_output_mb: float = typer.Option(_D("max_output_mb"), "--max-output-mb", help=help_text("max_output_mb")),
    request_timeout: float = typer.Option(_D("request_timeout_s"), "--request-timeout",
                                          help=help_text("request_timeout_s")),
    token_env: Optional[str] = typer.Option(None, "--token-env", help=help_text("token_env")),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help=help_text("token_file")),
    access_log: bool = typer.Option(_D("access_log"), "--access-log/--no-access-log", help=help_text("access_log")),
) -> None:
    """Serve exported models over HTTP on the Open Inference Protocol (KServe v2)."""
    from aetk.serve.server import serve

    options = ServeOptions(
        model_dir=model_dir, host=host, port=port, device=device, precision=precision, threads=threads,
        max_batch=max_batch, max_queue_delay_ms=max_queue_delay_ms, preferred_batch=_preferred(preferred_batch),
        max_queue=max_queue, workers=workers, max_body_mb=max_body_mb, max_json_mb=max_json_mb,
        max_output_mb=max_output_mb, request_timeout_s=request_timeout, token_env=token_env,
        token_file=token_file, access_log=access_log)
    code = serve(options)
    raise typer.Exit(code)
