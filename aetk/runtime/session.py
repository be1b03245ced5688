"""One exported ONNX graph in an onnxruntime session: checked loading, input validation,
batch splitting, and IOBinding.

Input rules (``OnnxModel.run``):

* Inputs are numpy arrays (or anything ``np.asarray`` accepts) with a leading batch axis.
* Floating arrays are cast to the graph's float type (float64 -> float32 rounds); integer
  and bool arrays are converted to it as well, so ``uint8`` images can be fed directly.
  Strings, objects and complex numbers raise ``InputDTypeError``.
* NaN and infinity pass through unchanged: the graphs are pure arithmetic, and a value a
  caller wants to reconstruct (for anomaly scores, say) is not the runtime's to reject.
* Shapes must match the graph's, except the batch axis. Models whose metadata says
  ``dynamic_spatial`` take any height and width that are multiples of ``spatial_multiple``;
  the *autoencoder* graph also takes other sizes: the input is reflect-padded at the bottom
  and right up to the next multiple (numpy's ``reflect`` mode) and the output is cropped back,
  so output size == input size. Encoder and decoder graphs cannot crop a code, so other
  sizes raise ``InputShapeError`` there.
* Large batches run in chunks of ``batch_size`` rows whose results are concatenated; every
  row is computed independently, so results equal one big call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aetk.checks import positive_int
from aetk.padding import pad_to_multiple

from . import modelfile, providers
from .errors import (InputDTypeError, InputShapeError, ModelFileError, ProviderUnavailableError,
                     RuntimeModelError)
from .metadata import ModelMetadata

_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
SPATIAL_AXES = {"NCHW": (2, 3), "NHW": (1, 2)}  # axes of a batch, per metadata layout
LOG_LEVELS = {"verbose": 0, "info": 1, "warning": 2, "error": 3, "fatal": 4}
_DEFAULT = object()


def _positive_int(name: str, value: Any) -> int | None:
    return positive_int(name, value, error=RuntimeModelError, allow_none=True)


def _dim(d: Any) -> int | str | None:
    """An ORT dimension: int when fixed, its symbol (str) or None when dynamic."""
    if isinstance(d, int):
        return d if d >= 0 else None
    return d if isinstance(d, str) and d else None


def crop_to(y: np.ndarray, axes: tuple[int, ...], sizes: tuple[int, ...]) -> np.ndarray:
    index = [slice(None)] * y.ndim
    for ax, size in zip(axes, sizes):
        index[ax] = slice(0, size)
    return np.ascontiguousarray(y[tuple(index)])


class OnnxModel:
    """An onnxruntime session with its aetk metadata; build it with :func:`load_model`."""

    def __init__(self, session: Any, path: Path, metadata: ModelMetadata, *, device: str,
                 device_id: int, batch_size: int | None, io_binding: bool, note: str = "") -> None:
        self.session, self.path, self.metadata = session, path, metadata
        self.device, self.device_id, self.note = device, device_id, note
        self.batch_size, self.io_binding = batch_size, io_binding
        ins, outs = session.get_inputs(), session.get_outputs()
        self.input_names = [i.name for i in ins]
        self.output_names = [o.name for o in outs]
        self.input_shapes = {i.name: tuple(_dim(d) for d in i.shape) for i in ins}
        self.output_shapes = {o.name: tuple(_dim(d) for d in o.shape) for o in outs}
        self.input_types = {i.name: i.type for i in ins}
        self.input_dtypes = {i.name: (np.dtype(_DTYPES[i.type]) if i.type in _DTYPES else None)
                             for i in ins}

    # -- description ------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses, best first."""
        return list(self.session.get_providers())

    @property
    def graph(self) -> str:
        return self.metadata.graph

    @property
    def threads(self) -> tuple[int, int]:
        """(intra-op, inter-op) thread counts as set (0: onnxruntime's default)."""
        so = self.session.get_session_options()
        return so.intra_op_num_threads, so.inter_op_num_threads

    def spatial_axes(self, name: str) -> tuple[int, ...]:
        """Axes of input ``name`` that must be multiples of spatial_multiple (or () )."""
        meta = self.metadata
        if not (meta.dynamic_spatial and meta.graph in ("encoder", "autoencoder")
                and name == self.input_names[0]):
            return ()
        shape = self.input_shapes[name]
        axes = SPATIAL_AXES.get(meta.layout, ())
        return tuple(ax for ax in axes if ax < len(shape) and not isinstance(shape[ax], int))

    def describe_input(self, name: str) -> str:
        """The shape input ``name`` takes, e.g. ``(batch, 1, 28, 28)``."""
        shape = self.input_shapes[name]
        dims = ["batch" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(shape)]
        text = f"({', '.join(dims)})"
        axes = self.spatial_axes(name)
        if axes:
            text += (f" with {' and '.join(dims[a] for a in axes)} multiples of "
                     f"{self.metadata.spatial_multiple}")
        return text

    def __repr__(self) -> str:
        return (f"OnnxModel({str(self.path)!r}, graph={self.graph!r}, device={self.device!r}, "
                f"inputs={self.input_names}, outputs={self.output_names})")

    # -- input checks -------------------------------------------------------------------
    def _feeds(self, inputs: Any) -> dict[str, Any]:
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - set(self.input_names))
            missing = [n for n in self.input_names if n not in inputs]
            if unknown or missing:
                raise InputShapeError(
                    f"{self.path.name}: inputs {sorted(inputs)} do not match the graph's inputs "
                    f"{self.input_names}" + (f" (unknown: {unknown})" if unknown else "")
                    + (f" (missing: {missing})" if missing else ""))
            return dict(inputs)
        if len(self.input_names) != 1:
            raise InputShapeError(f"{self.path.name} has inputs {self.input_names}: pass a dict "
                                  f"{{name: array}}, not one array")
        return {self.input_names[0]: inputs}

    def convert(self, name: str, value: Any) -> np.ndarray:
        """``value`` as a contiguous array of the graph's element type (see the module doc)."""
        want = self.input_dtypes[name]
        if want is None:
            raise RuntimeModelError(f"{self.path.name}: input {name!r} has type "
                                    f"{self.input_types[name]}, which aetk.runtime cannot feed")
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InputShapeError(f"{self.path.name}: input {name!r} is not a rectangular array "
                                  f"({exc})") from None
        kind = arr.dtype.kind
        if arr.dtype == want:
            pass
        elif want.kind == "f" and kind in "fiub":
            arr = arr.astype(want)
        elif want.kind in "iub" and np.can_cast(arr.dtype, want, casting="safe"):
            arr = arr.astype(want)
        else:
            raise InputDTypeError(f"{self.path.name}: input {name!r} must be a real numeric array "
                                  f"(the graph takes {want.name}); got dtype {arr.dtype}")
        return np.ascontiguousarray(arr)

    def check_shape(self, name: str, arr: np.ndarray, multiples: bool = True) -> None:
        shape = self.input_shapes[name]

        def fail(extra: str = "") -> InputShapeError:
            return InputShapeError(f"{self.path.name}: input {name!r} expects shape "
                                   f"{self.describe_input(name)}, got {tuple(arr.shape)}{extra}")

        if arr.ndim != len(shape):
            one = (arr.ndim == len(shape) - 1
                   and all(not isinstance(d, int) or d == s for d, s in zip(shape[1:], arr.shape)))
            raise fail("; for one example add a batch axis (x[None])" if one else "")
        for ax in range(1, arr.ndim):
            d = shape[ax]
            if (isinstance(d, int) and arr.shape[ax] != d) or arr.shape[ax] == 0:
                raise fail()
        axes = self.spatial_axes(name)
        m = self.metadata.spatial_multiple
        if multiples and axes and any(arr.shape[a] % m for a in axes):
            hint = ("" if self.graph != "encoder" else
                    "; pad the input, or reconstruct with the autoencoder graph, which pads and crops")
            raise fail(f": {' x '.join(str(arr.shape[a]) for a in axes)} are not all multiples of {m}{hint}")

    @property
    def pads(self) -> bool:
        """Whether ``run`` reflect-pads odd spatial sizes (autoencoder graphs with dynamic H x W)."""
        return self.graph == "autoencoder" and bool(self.spatial_axes(self.input_names[0]))

    def validate(self, inputs: Any) -> dict[str, np.ndarray]:
        """The feeds {name: array} ``run`` would use, converted and checked (before padding);
        raises InputShapeError / InputDTypeError. A service calls this per request."""
        feeds = {name: self.convert(name, v) for name, v in self._feeds(inputs).items()}
        for name, arr in feeds.items():
            self.check_shape(name, arr, multiples=not (self.pads and name == self.input_names[0]))
        sizes = {name: arr.shape[0] for name, arr in feeds.items()}
        if len(set(sizes.values())) > 1:
            raise InputShapeError(f"{self.path.name}: inputs have different batch sizes {sizes}")
        return feeds

    # -- running ------------------------------------------------------------------------
    def _run_once(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self.io_binding:
            return self.session.run(self.output_names, feeds)
        import onnxruntime as ort

        binding = self.session.io_binding()  # one per call: bindings are not thread-safe
        values = []  # the OrtValues must outlive the run
        for name, arr in feeds.items():
            values.append(ort.OrtValue.ortvalue_from_numpy(arr, self.device, self.device_id))
            binding.bind_ortvalue_input(name, values[-1])
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def run(self, inputs: Any, batch_size: Any = _DEFAULT) -> dict[str, np.ndarray]:
        """Run the graph: an array (single-input graphs) or {name: array} -> {output: array}."""
        batch_size = self.batch_size if batch_size is _DEFAULT else _positive_int("batch_size", batch_size)
        feeds = self.validate(inputs)
        crop = None
        if self.pads:
            name = self.input_names[0]
            axes = self.spatial_axes(name)
            crop = (axes, tuple(feeds[name].shape[a] for a in axes))
            feeds[name] = pad_to_multiple(feeds[name], axes, self.metadata.spatial_multiple)
        n = next(iter(feeds.values())).shape[0]
        if n == 0:  # run one zero row to learn the output shapes, return none of it
            one = {k: np.zeros((1,) + v.shape[1:], v.dtype) for k, v in feeds.items()}
            outs = [o[:0] for o in self._run_once(one)]
        elif batch_size is None or n <= batch_size:
            outs = self._run_once(feeds)
        else:
            parts = [self._run_once({k: v[i:i + batch_size] for k, v in feeds.items()})
                     for i in range(0, n, batch_size)]
            outs = [np.concatenate([p[j] for p in parts], axis=0) for j in range(len(self.output_names))]
        result = dict(zip(self.output_names, outs))
        if crop is not None:
            axes, sizes = crop
            result = {k: (crop_to(v, axes, sizes) if v.ndim == len(feeds[self.input_names[0]].shape)
                          else v) for k, v in result.items()}
        return result

    def __call__(self, inputs: Any) -> dict[str, np.ndarray]:
        return self.run(inputs)


@dataclass(frozen=True)
class SessionSettings:
    """How ONNX Runtime runs a session, beyond threads and device. log_level: its log
    severity. spinning: False makes idle intra-op threads sleep at once rather than busy-wait
    for the next call (servers, whose event loop needs the CPU between calls)."""

    log_level: str = "error"
    spinning: bool = True


def session_options(threads: int | None, inter_threads: int | None,
                    settings: SessionSettings = SessionSettings()) -> Any:
    import onnxruntime as ort

    if settings.log_level not in LOG_LEVELS:
        raise RuntimeModelError(f"log_level={settings.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    so = ort.SessionOptions()
    so.log_severity_level = LOG_LEVELS[settings.log_level]
    if threads is not None:
        so.intra_op_num_threads = threads
    if inter_threads is not None:
        so.inter_op_num_threads = inter_threads
        if inter_threads > 1:  # inter-op threads only run in the parallel executor
            so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if not settings.spinning:  # idle threads sleep at once instead of busy-waiting for the next call
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def load_model(path: str | os.PathLike, device: str = "auto", threads: int | None = None,
               batch_size: int | None = 256, *, inter_threads: int | None = None,
               io_binding: bool | None = None, cuda_options: dict | None = None,
               settings: SessionSettings = SessionSettings()) -> OnnxModel:
    """Open one exported ONNX graph.

    device: "auto" (CUDA when it really works, else CPU, quietly), "cpu", "cuda" or "cuda:N"
        (ProviderUnavailableError when CUDA cannot run). threads / inter_threads: onnxruntime's
        intra-op / inter-op thread counts (None: its default). batch_size: rows per ORT call
        (None: no splitting). io_binding: bind inputs on the device and outputs to the CPU
        (None: on for CUDA). settings: the session's log level and thread spinning
        (SessionSettings).
    """
    threads = _positive_int("threads", threads)
    inter_threads = _positive_int("inter_threads", inter_threads)
    batch_size = _positive_int("batch_size", batch_size)
    if io_binding is not None and not isinstance(io_binding, bool):
        raise RuntimeModelError(f"io_binding must be True, False or None (auto), got {io_binding!r}")
    kind, _ = providers.parse_device(device)
    path = modelfile.check_model_file(path)  # before any session: see modelfile's doc
    choice = providers.choose_providers(device, cuda_options)
    so = session_options(threads, inter_threads, settings)

    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), sess_options=so, providers=choice.providers)
    except Exception as exc:  # ORT raises its own Fail / InvalidGraph / ... classes
        raise ModelFileError(f"onnxruntime cannot load {path} on {choice.device}: {exc}") from exc
    used = session.get_providers()
    dev, note = choice.device, choice.note
    if dev == "cuda" and providers.CUDA not in used:
        if kind == "cuda":
            raise ProviderUnavailableError(f"device={device!r}: onnxruntime did not start its CUDA "
                                           f"provider for {path} (it uses {used})")
        dev, note = "cpu", "CPU, because onnxruntime did not start its CUDA provider"
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, source=str(path))
    return OnnxModel(session, path, metadata, device=dev, device_id=choice.device_id,
                     batch_size=batch_size, io_binding=(dev == "cuda") if io_binding is None else io_binding,
                     note=note)


__all__ = ["LOG_LEVELS", "OnnxModel", "SessionSettings", "crop_to", "load_model", "session_options"]
