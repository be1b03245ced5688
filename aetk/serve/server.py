"""Run the app on uvicorn: bind the socket, say where, serve until SIGTERM or Ctrl-C, then drain.

On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets the requests in flight
finish (up to ``--request-timeout``), then the app's batch queues stop; the process exits 0.
With ``--workers N`` uvicorn's supervisor runs N processes on the one socket, each loading
the models (the options travel in the AETK_SERVE_OPTIONS environment variable); their metrics
meet in a shared folder (shared_metrics_folder), so any worker's /metrics counts them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from .options import ServeOptionError, ServeOptions
from .repository import describe_folder

ENV_OPTIONS = "AETK_SERVE_OPTIONS"
MISSING = ("uvicorn", "starlette", "prometheus_client", "httptools")


def require_dependencies() -> None:
    """A clear message when the serving packages are not installed."""
    import importlib.util

    missing = [m for m in MISSING if importlib.util.find_spec(m) is None]
    if missing:
        raise ServeOptionError(f"aetk serve needs {', '.join(missing)}: pip install 'aetk[serve]' "
                               f"(or pip install uvicorn httptools starlette prometheus_client)")


def options_to_environment(options: ServeOptions) -> str:
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}
    return json.dumps(values)


def options_from_environment() -> ServeOptions:
    values = json.loads(os.environ[ENV_OPTIONS])
    values["preferred_batch"] = tuple(values.get("preferred_batch") or ())
    return ServeOptions(**values)


def configure_logging(options: ServeOptions) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("aetk.serve.access", "aetk.serve.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(logging.INFO)
        log.propagate = False
    # uvicorn's own lines (warnings and errors only: its startup chatter is replaced by ours)
    uv = logging.StreamHandler(sys.stderr)
    uv.setFormatter(logging.Formatter("uvicorn %(levelname)s: %(message)s"))
    for name in ("uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [uv] if name == "uvicorn" else []
        log.setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio's own loop turns Nagle off (TCP_NODELAY) only on connections
    # whose socket says TCP; with it on, a response written before the last one was
    # acknowledged (pipelining) waited ~44 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeOptionError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app, options: ServeOptions, **kw):
    import uvicorn

    config = uvicorn.Config(app, http="aetk.serve.connection:BoundedHeadProtocol", loop="auto", lifespan="on",
                            access_log=False, log_config=None, server_header=False, date_header=True,
                            timeout_keep_alive=5, timeout_graceful_shutdown=int(max(1, options.request_timeout_s)),
                            workers=options.workers, **kw)
    config.aetk_head_timeout_s = options.request_timeout_s  # read by BoundedHeadProtocol
    return config


def _ignore(signum, frame) -> None:  # uvicorn re-raises the signal it handled once it has drained
    pass


def serve(options: ServeOptions, announce=print) -> int:
    """Load, bind, announce ``listening on http://HOST:PORT``, serve until a signal; exit status."""
    require_dependencies()
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from .app import create_app

    folder = options.folder
    options.token()  # a missing token file is an error before anything starts
    configure_logging(options)
    if options.workers == 1:
        app = create_app(options)
        service = app.service
        repo = service.repository
        what = f"{repo.layout} {folder} on {repo.device} (models: {', '.join(sorted(repo.models))})"
    else:
        layout = describe_folder(folder)
        os.environ[ENV_OPTIONS] = options_to_environment(options)
        app = "aetk.serve.app:app_from_environment"
        what = f"{layout} {folder} ({options.workers} workers)"
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    announce(f"aetk serve: {what}; listening on http://{shown}:{port}", flush=True)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    if options.workers == 1:
        server = uvicorn.Server(uvicorn_config(app, options))
        server.run(sockets=[sock])
    else:
        with shared_metrics_folder():
            config = uvicorn_config(app, options, factory=True)
            Multiprocess(config, sockets=[sock]).run()
    return 0


@contextlib.contextmanager
def shared_metrics_folder():
    """A private folder for the workers' metric files (metrics.py), named to them in the
    environment they inherit, and removed when they are done; one the user named in
    PROMETHEUS_MULTIPROC_DIR is used as it is and kept."""
    from .metrics import MULTIPROCESS_ENV

    if os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="aetk-serve-metrics-")
    os.environ[MULTIPROCESS_ENV] = folder
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["ENV_OPTIONS", "bind", "configure_logging", "options_from_environment", "require_dependencies",
           "serve", "uvicorn_config"]
