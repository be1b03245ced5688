"""``aetk serve``: exported models on the Open Inference Protocol (KServe v2), on uvicorn.

Module map, one responsibility each: ``options`` (ServeOptions, every default), ``repository``
(what a MODEL_DIR offers, loaded through ``aetk.runtime``), ``protocol`` (v2 JSON + binary
tensor codec), ``batching`` (one dynamic-batching queue per model), ``metrics`` (Prometheus),
``connection`` (uvicorn's HTTP protocol with bounds on request heads), ``guard`` (limits, auth,
timeouts, access log), ``app`` (the Starlette routes), ``server`` (uvicorn, sockets, signals).
Nothing here imports torch or the training code.
"""

from .options import ServeOptionError, ServeOptions

__all__ = ["ServeOptionError", "ServeOptions"]
