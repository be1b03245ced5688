"""Checks on an ONNX file before onnxruntime opens it: it exists, it is an ONNX model, and
every tensor stored as external data lives inside the file's own folder.

A model file is untrusted input to a service: its external-data ``location`` entries are
paths that onnxruntime would open and map, so ``/etc/...``, ``../../secret`` or a symlink
leading out of the folder must be refused before a session exists. The check reads the
protobuf wire format directly (a few dozen lines) so the runtime needs neither ``onnx`` nor
its protobuf package, and it never reads tensor bytes: only message framing is walked.

The check and onnxruntime's later open are separate steps; a folder that an attacker can
rewrite in between is out of scope (serve models from a read-only folder).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import ExternalDataError, ModelFileError, ModelNotFoundError

# Message types and the fields (number -> type) that can lead to a TensorProto; numbers from
# onnx.proto (tests compare them with onnx's own descriptors).
_SCHEMA: dict[str, dict[int, str]] = {
    "Model": {7: "Graph", 20: "TrainingInfo", 25: "Function"},
    "TrainingInfo": {1: "Graph", 2: "Graph"},
    "Function": {7: "Node"},
    "Graph": {1: "Node", 5: "Tensor", 15: "Sparse"},
    "Node": {5: "Attribute"},
    "Attribute": {5: "Tensor", 6: "Graph", 10: "Tensor", 11: "Graph", 22: "Sparse", 23: "Sparse"},
    "Sparse": {1: "Tensor", 2: "Tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA = 8, 13
_MODEL_GRAPH = 7


class _NotProtobuf(Exception):
    pass


@dataclass(frozen=True)
class ExternalRef:
    tensor: str  # the tensor's name
    location: str  # as written in the file
    offset: int = 0
    length: int | None = None


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _NotProtobuf("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf, pos: int, end: int):
    """(field number, wire type, value or (start, stop) of a length-delimited field)."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _NotProtobuf("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise _NotProtobuf("truncated fixed-size field")
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if pos + size > end:
                raise _NotProtobuf("length-delimited field runs past its message")
            yield number, wire, (pos, pos + size)
            pos += size
        else:  # groups (3, 4) are not used by onnx.proto; anything else is not protobuf
            raise _NotProtobuf(f"wire type {wire}")
    if pos != end:
        raise _NotProtobuf("message runs past its end")


def _text(buf, span: tuple[int, int]) -> str:
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _NotProtobuf("a string field is not UTF-8") from exc


def _tensor_refs(buf, start: int, end: int) -> ExternalRef | None:
    name, entries = "", {}
    for number, wire, value in _fields(buf, start, end):
        if wire != 2:
            continue
        if number == _TENSOR_NAME:
            name = _text(buf, value)
        elif number == _TENSOR_EXTERNAL_DATA:
            key = val = ""
            for n, w, v in _fields(buf, *value):
                if w == 2 and n in (1, 2):
                    if n == 1:
                        key = _text(buf, v)
                    else:
                        val = _text(buf, v)
            entries[key] = val
    if not entries:
        return None

    def number(key: str) -> int | None:
        if key not in entries:
            return None
        try:
            return int(entries[key])
        except ValueError:
            raise _NotProtobuf(f"external data {key}={entries[key]!r} of tensor {name!r}") from None

    return ExternalRef(name, entries.get("location", ""), number("offset") or 0, number("length"))


def scan(buf) -> tuple[bool, list[ExternalRef]]:
    """(whether a ModelProto graph was found, external data references) of serialized bytes."""
    refs: list[ExternalRef] = []
    has_graph = False
    stack = [("Model", 0, len(buf))]
    while stack:
        kind, start, end = stack.pop()
        children = _SCHEMA[kind]
        for number, wire, value in _fields(buf, start, end):
            if wire != 2 or number not in children:
                continue
            if kind == "Model" and number == _MODEL_GRAPH:
                has_graph = True
            child = children[number]
            if child == "Tensor":
                ref = _tensor_refs(buf, *value)
                if ref is not None:
                    refs.append(ref)
            else:
                stack.append((child, *value))
    return has_graph, refs


def _escapes(location: str) -> str:
    """Why a location is not a plain relative path inside the folder ('' when it is)."""
    if not location:
        return "an empty location"
    if "\x00" in location:
        return "a NUL byte"
    win, posix = PureWindowsPath(location), PurePosixPath(location)
    if posix.is_absolute() or win.is_absolute() or win.drive or win.root:
        return "an absolute path"
    if ".." in win.parts or ".." in posix.parts:
        return "a '..' component"
    return ""


def check_external_data(path: Path, refs: list[ExternalRef]) -> None:
    """ExternalDataError unless every reference stays inside ``path``'s folder and exists."""
    folder = path.parent
    real_folder = os.path.realpath(folder)
    for ref in refs:
        where = f"{path}: tensor {ref.tensor!r} has external data at {ref.location!r}"
        why = _escapes(ref.location)
        if why:
            raise ExternalDataError(f"{where}, {why}; external data must be a relative path inside "
                                    f"the model's folder {folder}")
        target = os.path.realpath(folder / ref.location)
        if os.path.commonpath([real_folder, target]) != real_folder:
            raise ExternalDataError(f"{where}, which resolves to {target} outside the model's folder "
                                    f"{real_folder} (a symlink leading out?)")
        if not os.path.isfile(target):
            raise ExternalDataError(f"{where}, which is missing (copy the data files with the .onnx)")
        size = os.path.getsize(target)
        stop = ref.offset + (ref.length if ref.length is not None else 0)
        if ref.offset < 0 or (ref.length is not None and ref.length < 0) or stop > size:
            raise ExternalDataError(f"{where} (offset {ref.offset}, length {ref.length}), beyond the "
                                    f"end of that {size}-byte file")


def check_model_file(path: str | os.PathLike) -> Path:
    """The path, after checking it names an ONNX model whose external data is safe to load."""
    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(f"ONNX model {p} does not exist")
    if p.is_dir():
        raise ModelFileError(f"{p} is a folder, not an ONNX file (load_export() opens export folders)")
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelFileError(f"{p} is empty, not an ONNX model")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                has_graph, refs = scan(buf)  # mmap indexes like bytes, no copy
    except _NotProtobuf as exc:
        raise ModelFileError(f"{p} is not an ONNX model (not a valid protobuf: {exc})") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read ONNX model {p}: {exc}") from exc
    if not has_graph:
        raise ModelFileError(f"{p} is not an ONNX model (no graph in it)")
    check_external_data(p, refs)
    return p


__all__ = ["ExternalRef", "check_external_data", "check_model_file", "scan"]
