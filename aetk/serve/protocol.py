"""The Open Inference Protocol (KServe v2) inference messages, with Triton's binary tensor
data extension: bytes in, numpy arrays out, and back. No HTTP here.

Request: a JSON object ``{"id"?, "parameters"?, "inputs": [...], "outputs"?: [...]}``, or,
with the ``Inference-Header-Content-Length: N`` header, N bytes of that JSON followed by the
binary tensors of the inputs whose ``parameters.binary_data_size`` is set, in input order
(little-endian, row-major, no padding). JSON tensor data may be flat or nested.

Response: JSON outputs ``{"name", "datatype", "shape", "data"}``, or binary ones (the
request's output ``parameters.binary_data``, or ``parameters.binary_data_output`` for all)
with ``parameters.binary_data_size`` and the bytes after the JSON; then the caller sets the
``Inference-Header-Content-Length`` header to the JSON's length.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from aetk.errors import UserInputError
from aetk.options import flag

from .options import ServeOptions

DTYPES = {"BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype("<u2"),
          "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype(np.int8),
          "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
          "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
UNSUPPORTED = ("BYTES", "BF16")
MAX_DIMS = 16


class ProtocolError(UserInputError):
    """A request the protocol cannot accept; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RequestedOutput:
    name: str
    binary: Optional[bool] = None  # None: the request-level default


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: Optional[str] = None
    outputs: list[RequestedOutput] = field(default_factory=list)
    binary_output: bool = False  # parameters.binary_data_output
    parameters: dict[str, Any] = field(default_factory=dict)


def v2_datatype(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    for name, d in DTYPES.items():
        if d == dtype:
            return name
    raise ProtocolError(f"dtype {dtype} has no Open Inference Protocol datatype", 500)


def _json(data: bytes | memoryview, max_json: int) -> dict:
    if len(data) > max_json:
        raise ProtocolError(f"the JSON part of the request is {len(data)} bytes, over the limit of {max_json} "
                            f"({flag(ServeOptions, 'max_json_mb')}); send large tensors as binary data", 413)
    try:
        doc = json.loads(bytes(data))
    except RecursionError:
        raise ProtocolError("invalid JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"the inference request must be a JSON object, got {type(doc).__name__}")
    return doc


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or len(value) > MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)):
        raise ProtocolError(f"{where}: 'shape' must be a list of at most {MAX_DIMS} non-negative integers, "
                            f"got {_short(value)}")
    return tuple(value)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _params(obj: dict, where: str) -> dict:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: 'parameters' must be an object")
    return params


def _json_tensor(data: Any, dtype: np.dtype, shape: tuple[int, ...], where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise ProtocolError(f"{where}: 'data' must be a list of numbers, got {type(data).__name__}")
    try:
        arr = np.array(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"{where}: 'data' is not a rectangular list of numbers ({exc})") from None
    if arr.dtype.kind not in "biuf" and not (arr.size == 0 and arr.dtype.kind in "fO"):
        raise ProtocolError(f"{where}: 'data' must hold only numbers{' or booleans' if dtype.kind == 'b' else ''}")
    if arr.size != math.prod(shape):
        raise ProtocolError(f"{where}: 'data' holds {arr.size} values, shape {list(shape)} needs "
                            f"{math.prod(shape)}")
    if dtype.kind in "iub" and arr.dtype.kind == "f" and arr.size:
        try:  # integers beyond int64 (UINT64) come out of np.array as floats: read them exactly
            exact = np.array(data, dtype=dtype.newbyteorder("="))
        except (ValueError, TypeError, OverflowError):
            exact = None
        if exact is None or not np.array_equal(exact.astype(np.float64).ravel(), arr.ravel()):
            raise ProtocolError(f"{where}: datatype {v2_datatype(dtype)} takes integers, 'data' holds fractions")
        arr = exact
    return arr.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def parse_infer_request(body: bytes | bytearray | memoryview, header_length: Optional[int],
                        max_json: int) -> InferRequest:
    """Decode one inference request. Binary tensors are views of ``body`` (no copy)."""
    view = memoryview(body)
    if header_length is not None:
        if not 0 <= header_length <= len(view):
            raise ProtocolError(f"Inference-Header-Content-Length {header_length} does not fit the "
                                f"{len(view)}-byte body")
        doc, tail = _json(view[:header_length], max_json), view[header_length:]
    else:
        doc, tail = _json(view, max_json), view[len(view):]
    unknown = sorted(set(doc) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise ProtocolError(f"unknown keys {unknown} in the inference request")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    params = _params(doc, "the request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("the request needs 'inputs': a non-empty list of tensors")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise ProtocolError(f"inputs[{i}] must be an object")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{i}] needs a 'name'")
        where = f"input {name!r}"
        if name in arrays:
            raise ProtocolError(f"{where} is given twice")
        extra = sorted(set(spec) - {"name", "shape", "datatype", "parameters", "data"})
        if extra:
            raise ProtocolError(f"{where}: unknown keys {extra}")
        shape = _shape(spec.get("shape"), where)
        datatype = spec.get("datatype")
        if datatype in UNSUPPORTED:
            raise ProtocolError(f"{where}: datatype {datatype} is not supported; aetk models take numbers")
        if datatype not in DTYPES:
            raise ProtocolError(f"{where}: 'datatype' must be one of {', '.join(DTYPES)}, got {_short(datatype)}")
        dtype = DTYPES[datatype]
        size = _params(spec, where).get("binary_data_size")
        if size is not None:
            if "data" in spec:
                raise ProtocolError(f"{where}: give 'data' or parameters.binary_data_size, not both")
            want = math.prod(shape) * dtype.itemsize
            if not isinstance(size, int) or isinstance(size, bool) or size != want:
                raise ProtocolError(f"{where}: binary_data_size {_short(size)} does not match shape "
                                    f"{list(shape)} of {datatype} ({want} bytes)")
            if offset + size > len(tail):
                raise ProtocolError(f"{where}: the body ends before its {size} bytes of binary data")
            arr = np.frombuffer(tail[offset:offset + size], dtype=dtype).reshape(shape)
            offset += size
        elif "data" in spec:
            arr = _json_tensor(spec["data"], dtype, shape, where)
        else:
            raise ProtocolError(f"{where} has neither 'data' nor parameters.binary_data_size")
        arrays[name] = arr
    if offset != len(tail):
        raise ProtocolError(f"the body holds {len(tail) - offset} bytes after the tensors' binary data")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise ProtocolError("parameters.binary_data_output must be true or false")
    outputs = []
    requested = doc.get("outputs", [])
    if not isinstance(requested, list):
        raise ProtocolError("'outputs' must be a list")
    for i, spec in enumerate(requested):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ProtocolError(f"outputs[{i}] must be an object with a 'name'")
        binary = _params(spec, f"output {spec['name']!r}").get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise ProtocolError(f"output {spec['name']!r}: parameters.binary_data must be true or false")
        if "classification" in _params(spec, "output"):
            raise ProtocolError("the classification extension is not supported")
        outputs.append(RequestedOutput(spec["name"], binary))
    return InferRequest(arrays, request_id, outputs, binary_output, params)


def encode_infer_response(model_name: str, version: str, outputs: list[tuple[str, np.ndarray, bool]],
                          request_id: Optional[str] = None) -> tuple[list[bytes | memoryview], Optional[int]]:
    """The response body (as pieces to join or stream) and the JSON header's length, or None
    when every output is JSON (then the body is plain JSON)."""
    doc: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request_id is not None:
        doc["id"] = request_id
    entries, blobs = [], []
    for name, arr, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": v2_datatype(arr.dtype), "shape": list(arr.shape)}
        if binary:
            data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
            blobs.append(memoryview(data.reshape(-1).view(np.uint8)))
            entry["parameters"] = {"binary_data_size": data.nbytes}
        else:
            entry["data"] = arr.ravel().tolist()
        entries.append(entry)
    doc["outputs"] = entries
    head = json.dumps(doc, separators=(",", ":")).encode()
    return [head, *blobs], (len(head) if blobs else None)


def encode_infer_request(inputs: dict[str, np.ndarray], binary: bool = True,
                         outputs: Optional[list[str]] = None, binary_output: bool = True,
                         request_id: Optional[str] = None) -> tuple[bytes, Optional[int]]:
    """A client's side of the codec (the benchmark and the tests use it): body and header length."""
    doc: dict[str, Any] = {"inputs": []}
    if request_id is not None:
        doc["id"] = request_id
    blobs = []
    for name, arr in inputs.items():
        arr = np.asarray(arr)
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": v2_datatype(arr.dtype)}
        if binary:
            blob = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.ravel().tolist()
        doc["inputs"].append(entry)
    if outputs is not None:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary_output}} for n in outputs]
    elif binary_output:
        doc["parameters"] = {"binary_data_output": True}
    head = json.dumps(doc, separators=(",", ":")).encode()
    return head + b"".join(blobs), (len(head) if blobs else None)


def decode_infer_response(body: bytes, header_length: Optional[int]) -> dict[str, np.ndarray]:
    """A client's side: the outputs of a response body as arrays."""
    head = body if header_length is None else body[:header_length]
    doc = json.loads(head)
    out, offset = {}, (len(body) if header_length is None else header_length)
    for entry in doc["outputs"]:
        dtype = DTYPES[entry["datatype"]]
        size = entry.get("parameters", {}).get("binary_data_size")
        if size is None:
            out[entry["name"]] = np.array(entry["data"], dtype=dtype).reshape(entry["shape"])
        else:
            out[entry["name"]] = np.frombuffer(body, dtype, count=size // dtype.itemsize,
                                               offset=offset).reshape(entry["shape"])
            offset += size
    return out


__all__ = ["DTYPES", "InferRequest", "ProtocolError", "RequestedOutput", "decode_infer_response",
           "encode_infer_request", "encode_infer_response", "parse_infer_request", "v2_datatype"]
