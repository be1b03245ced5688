"""Export a trained model as validated, self-describing ONNX files.

    result = export_run("runs/conv", "out/", ExportOptions(int8=True))   # out/encoder.onnx, decoder.onnx, ...
    result = export_model(model, "out/", normalization=norm.to_dict(), real_batch=x)

Every graph is exported with PyTorch's ONNX exporter (torch.export based), with a dynamic
batch axis (and dynamic height and width for fully convolutional models), then checked
(onnx.checker full check, strict shape inference) and run in ONNX Runtime against PyTorch
on a random batch and a real one. Files are staged in a hidden folder inside OUT and moved
into place only when every graph has validated, so a failed export leaves no half-written
model behind; ``export.json``, written last, records what was validated and measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

import aetk
from aetk.artifacts import ExportDir, RunDataError, RunDir
from aetk.artifacts.export_dir import VARIANT_TAGS
from aetk.atomic import publish, staging_folder
from aetk.data.base import collect
from aetk.errors import UserInputError
from aetk.export.errors import ExportError, ExportInputError, ExportIntegrityError
from aetk.export.graphs import GraphSpec, data_layout, export_spec, graph_specs
from aetk.export.options import ExportOptions
from aetk.export.validate import check_model, cpu_session, run_session, validate_graph
from aetk.export.variants import accuracy_change, to_float16, to_int8
from aetk.options import check, flag
from aetk.progress import Progress, or_null
from aetk.runtime.metadata import ModelMetadata

DEFAULT_OPSET = ExportOptions.opset  # the defaults live in ExportOptions
MIN_OPSET = 18
EXTERNAL_DATA_THRESHOLD = ExportOptions.external_data_threshold  # larger models keep weights in a side file
VALIDATION_ROWS = 64
CALIBRATION_ROWS = 512


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)  # "encoder", "encoder.int8", ... -> file name
    validation: dict[str, Any] = field(default_factory=dict)  # graph -> batch -> output -> stats
    variants: dict[str, Any] = field(default_factory=dict)  # "encoder.int8" -> accuracy change
    metadata: dict[str, str] = field(default_factory=dict)  # the encoder's metadata_props
    warnings: list[str] = field(default_factory=list)
    triton: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


# -- facts about the model ---------------------------------------------------------------------------
def weights_sha256(model: torch.nn.Module) -> str:
    """A hash of the trained weights: every tensor's name, dtype, shape and bytes, by name (the
    ``weights_sha256`` a run's model.json records, so the two name the same weights)."""
    from aetk.train.checkpoint import tensors_sha256

    return tensors_sha256(model.state_dict())


def layout_of(model: Any) -> str:
    return data_layout(model.traits, tuple(model.input_shape))


def model_metadata(model: Any, normalization: dict[str, Any] | None, graph: str) -> ModelMetadata:
    spec = export_spec(model.traits)
    out_act = spec.output_activation
    norm = normalization or {"kind": "none", "scale": 1.0, "mean": None, "std": None, "shape": None,
                             "value_range": None}
    value_range = [0.0, 1.0] if out_act == "sigmoid" else ([-1.0, 1.0] if out_act == "tanh"
                                                            else norm.get("value_range"))
    multiple = model.spatial_multiple
    return ModelMetadata(
        kind=model.kind, base_kind=spec.base_kind, graph=graph,
        input_shape=[int(s) for s in model.input_shape], layout=layout_of(model),
        code_shape=[int(s) for s in model.code_shape], normalization=norm,
        weights_sha256=weights_sha256(model), aetk_version=aetk.__version__,
        dynamic_spatial=multiple is not None, spatial_multiple=int(multiple or 0),
        value_range=None if value_range is None else [float(v) for v in value_range],
        output_activation=out_act, variational=spec.variational,
    )


def _set_metadata(proto: onnx.ModelProto, meta: ModelMetadata) -> None:
    del proto.metadata_props[:]
    for k, v in meta.to_props().items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "aetk"
    proto.producer_version = aetk.__version__
    proto.doc_string = (f"aetk {meta.kind} model, {meta.graph} graph ({meta.precision}); "
                        f"input shape {meta.input_shape}, code shape {meta.code_shape}")


# -- PyTorch -> ONNX ----------------------------------------------------------------------------------
def to_onnx(spec: GraphSpec, opset: int, multiple: int | None) -> onnx.ModelProto:
    """Export one graph with torch.export; dynamic axes get readable names."""
    from torch.export import Dim

    batch = Dim("batch")
    code_h, code_w = Dim("h"), Dim("w")
    dynamic: dict[str, dict[int, Any]] = {}
    for name, axes in spec.dynamic.items():
        data_space = name == "x"  # the image itself; other inputs are codes at 1/multiple size
        dims: dict[int, Any] = {}
        for axis, label in axes.items():
            if label == "batch":
                dims[axis] = batch
            else:
                d = code_h if label == "height" else code_w
                dims[axis] = multiple * d if data_space else d
        dynamic[name] = dims
    log = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                spec.module.eval(), tuple(spec.inputs.values()), dynamo=True, opset_version=opset,
                input_names=list(spec.inputs), output_names=spec.outputs, dynamic_shapes=dynamic,
                optimize=True, verbose=False)
    except Exception as exc:  # the exporter raises many types; all mean the same thing here
        raise ExportError(f"PyTorch could not export the {spec.name} graph: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    proto = program.model_proto
    names = {"batch": "batch", "h": "code_height", "w": "code_width"}
    if multiple:
        names.update({f"{multiple}*h": "height", f"{multiple}*w": "width"})
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
    return proto


def opset_of(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


# -- files ---------------------------------------------------------------------------------------------
def prepare_out_dir(out_dir: Path) -> None:
    """OUT exists (or is made) and can be written to; else an error naming it."""
    from aetk.atomic import NotAFolderError, check_writable_folder

    try:
        check_writable_folder(out_dir)
    except NotAFolderError as exc:
        raise ExportError(f"output folder {out_dir} exists and is not a folder") from exc
    except OSError as exc:
        raise ExportError(f"output folder {out_dir} is not writable: {exc.strerror or exc}") from exc


def write_onnx(proto: onnx.ModelProto, path: Path, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
               ) -> list[Path]:
    """Write a model (self-contained when small, else with ``<name>.data`` beside it). A disk
    error names the file (a full disk would otherwise say only "No space left on device")."""
    try:
        if proto.ByteSize() < external_data_threshold:
            path.write_bytes(proto.SerializeToString())
            return [path]
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
        return [path, path.with_name(path.name + ".data")]
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


# -- the export -------------------------------------------------------------------------------------------
def _batches(spec: GraphSpec, model: Any, real: torch.Tensor | None, multiple: int | None
             ) -> dict[str, dict[str, torch.Tensor]]:
    """Validation inputs for a graph: random ones, real ones, and for fully convolutional
    models random ones at another size (the dynamic height and width at work)."""
    gen = torch.Generator().manual_seed(0)

    def rand_like(t: torch.Tensor, rows: int = 8, grow: int = 0) -> torch.Tensor:
        shape = list(t.shape)
        shape[0] = rows
        if grow:
            shape[-2] += grow
            shape[-1] += 2 * grow
        return torch.rand(shape, generator=gen) if spec.name != "decoder" and "eps" not in spec.inputs \
            else torch.randn(shape, generator=gen)

    out = {"random": {k: rand_like(v) for k, v in spec.inputs.items()}}
    if spec.name == "sample":
        out["random"]["logvar"] = out["random"]["logvar"] * 0.2 - 0.1
    if multiple and spec.name != "sample":
        out["random_resized"] = {k: rand_like(v, 3, multiple if k == "x" else 1) for k, v in spec.inputs.items()}
    if real is not None and len(real):
        with torch.no_grad():
            if spec.name in ("encoder", "autoencoder"):
                out["real"] = {"x": real}
            elif spec.name == "decoder":
                z = model.encode_stats(real)[0] if model.traits.variational else model.encode(real)
                out["real"] = {"z": z}
            else:
                mean, logvar = model.encode_stats(real)
                out["real"] = {"mean": mean, "logvar": logvar, "eps": torch.randn(mean.shape, generator=gen)}
    return out


def _feeds(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy() for k, v in inputs.items()}


def export_model(model: Any, out_dir: str | Path, options: ExportOptions = ExportOptions(),
                 progress: Progress | None = None, *, normalization: dict[str, Any] | None = None,
                 real_batch: torch.Tensor | None = None, calibration: torch.Tensor | None = None) -> ExportResult:
    """Export ``model`` (an aetk Autoencoder) to ``out_dir``; see the module docstring.

    ``normalization`` is the data normalization (``Normalization.to_dict()``) stored in the
    metadata; ``real_batch`` real examples in model space for validation; ``calibration``
    training examples for static int8 quantization of convolutional models.
    """
    progress = or_null(progress)
    try:
        return _export_model(model, Path(out_dir), options, progress, _Data(normalization, real_batch, calibration))
    finally:
        progress.finish()


@dataclass
class _Data:
    """What an export knows of the model's data: its normalization, real examples to validate
    on, and training examples to calibrate int8 on."""

    normalization: dict[str, Any] | None = None
    real_batch: torch.Tensor | None = None
    calibration: torch.Tensor | None = None


@dataclass
class _Staging:
    """Where an export's files wait until every graph validated, and what it found."""

    folder: Path
    result: ExportResult
    files: list[str] = field(default_factory=list)

    def graph(self, name: str, precision: str = "float32") -> Path:
        """The staged file of a graph at a precision (named by ExportDir, as in OUT)."""
        return ExportDir(self.folder).graph(name, precision)


@dataclass
class _Graph:
    """One exported graph on its way to the variants: its proto, spec and metadata."""

    spec: GraphSpec
    model: Any
    proto: Any
    meta: Any
    model_bytes: Any
    batches: dict
    reference: Any = None


def _export_model(model: Any, out: Path, options: ExportOptions, progress: Progress, data: _Data) -> ExportResult:
    result = ExportResult(out)
    opset = int(options.opset)
    if opset < MIN_OPSET:
        msg = (f"opset {opset} is below {MIN_OPSET}, the oldest aetk validates against; use "
               f"{flag(options, 'opset')} {MIN_OPSET} or newer")
        warnings.warn(msg, stacklevel=3)
        result.warnings.append(msg)
    prepare_out_dir(out)
    model = model.cpu().eval()
    kind_spec = export_spec(model.traits)
    convolutional = kind_spec.static_int8
    if options.fp16 and not kind_spec.float16:
        result.warnings.append(f"{flag(options, 'fp16')} skipped: ONNX Runtime cannot run float16 LSTM graphs "
                               f"reliably")
    real = None if data.real_batch is None else data.real_batch[:VALIDATION_ROWS].float().cpu()
    if real is None:
        result.warnings.append("no real data: validated on random inputs only")
    if options.int8 and convolutional and (data.calibration is None or not len(data.calibration)):
        raise ExportError(f"{flag(options, 'int8')} on a convolutional model needs calibration data from the "
                          f"run's training set, and none could be loaded")
    precisions = [p for p, on in (("float16", options.fp16 and kind_spec.float16), ("int8", options.int8)) if on]
    calibration = data.calibration if convolutional else None
    with staging_folder(out, "aetk-export") as stage:
        staging = _Staging(stage, result)
        common = model_metadata(model, data.normalization, "encoder")  # hashes the weights once
        for spec in graph_specs(model, model.spatial_multiple):
            graph = _export_graph(spec, model, real, common, staging, options, progress)
            if not kind_spec.graph(spec.name).has_weights:
                continue  # nothing to gain from lower precision
            for precision in precisions:
                progress.start(f"{precision} {spec.name}")
                _write_variant(graph, precision, calibration, staging, options)
        for name in staging.files:  # each file whole or not at all
            publish(stage / name, out / name)
    write_report(result)
    return result


def _export_graph(spec: GraphSpec, model: Any, real: torch.Tensor | None, common: Any, staging: _Staging,
                  options: ExportOptions, progress: Progress) -> _Graph:
    """Export, check and validate one graph into the staging folder."""
    result = staging.result
    opset, multiple = int(options.opset), model.spatial_multiple
    meta = dataclasses.replace(common, graph=spec.name)
    progress.start(f"export {spec.name}")
    proto = to_onnx(spec, opset, multiple)
    if opset_of(proto) < opset:
        raise ExportError(f"the exporter wrote opset {opset_of(proto)} for the {spec.name} graph, "
                          f"not the {opset} asked for")
    _set_metadata(proto, meta)
    path = staging.graph(spec.name)
    files = write_onnx(proto, path, options.external_data_threshold)
    staging.files += [f.name for f in files]
    check_model(proto if len(files) == 1 else str(path), spec.name)
    progress.start(f"validate {spec.name}")
    batches = _batches(spec, model, real, multiple)
    model_bytes = proto.SerializeToString() if len(files) == 1 else str(path)
    result.validation[spec.name] = validate_graph(model_bytes, spec.module, spec.name, spec.outputs,
                                                  batches, options.atol, options.rtol)
    result.files[spec.name] = path.name
    if spec.name == "encoder":
        result.metadata = meta.to_props()
    return _Graph(spec, model, proto, meta, model_bytes, batches)


def _write_variant(graph: _Graph, precision: str, calibration: torch.Tensor | None, staging: _Staging,
                   options: ExportOptions) -> None:
    """A float16 or int8 variant of one graph, with its accuracy change against float32
    (``calibration``: examples for static int8 quantization of convolutional models)."""
    spec, proto, meta = graph.spec, graph.proto, graph.meta
    tag = VARIANT_TAGS[precision]
    if precision == "float16":
        variant = to_float16(proto)
    else:
        calib = None
        if calibration is not None:
            calib_in = _batches(spec, graph.model, calibration.float().cpu(), None)["real"]
            calib = [{k: v[i:i + 64] for k, v in _feeds(calib_in).items()} for i in range(0, len(calibration), 64)]
        variant = to_int8(proto, static=calibration is not None, calibration=calib)
    _set_metadata(variant, dataclasses.replace(meta, precision=precision))
    key = f"{spec.name}.{tag}"
    check_model(variant, key)
    vpath = staging.graph(spec.name, precision)
    staging.files += [f.name for f in write_onnx(variant, vpath, options.external_data_threshold)]
    result = staging.result
    result.files[key] = vpath.name
    feeds = _feeds(graph.batches.get("real", graph.batches["random"]))
    data_range = None
    if meta.value_range is not None:
        data_range = float(meta.value_range[1] - meta.value_range[0]) or None
    try:
        if graph.reference is None:  # float32 outputs on `feeds`, once for every variant
            graph.reference = run_session(cpu_session(graph.model_bytes), feeds)
        result.variants[key] = accuracy_change(variant.SerializeToString(), graph.reference, feeds, spec.name,
                                               data_range)
    except Exception as exc:  # e.g. no float16 kernel for an op on the CPU
        result.variants[key] = {"not_measured": f"ONNX Runtime on the CPU cannot run it: "
                                                f"{str(exc).splitlines()[0][:200]}"}


def export_run(run_dir: str | Path | RunDir, out_dir: str | Path, options: ExportOptions = ExportOptions(),
               progress: Progress | None = None) -> ExportResult:
    """Export a run folder written by ``aetk train``: the model with its data's normalization,
    validated on real examples of the run's test split (training split for calibration);
    with ``options.triton``, also a Triton model repository."""
    from aetk.train.checkpoint import CheckpointError

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    run_dir = run.path
    check(options, ExportInputError)
    if options.triton is not None:
        check(options.triton, ExportInputError)
    prepare_out_dir(Path(out_dir))  # before any slow work: an unwritable OUT fails at once
    data = _Data()
    notes: list[str] = []
    try:
        loaded = run.load()
        model, data.normalization = loaded.model, loaded.normalization.to_dict()
        data.real_batch, _ = collect(loaded.data.test if loaded.data.test is not None else loaded.data.train,
                                     VALIDATION_ROWS)
        if options.int8:
            data.calibration, _ = collect(loaded.data.train, CALIBRATION_ROWS)
        notes += loaded.warnings
    except RunDataError as exc:  # the model is fine but its config or data cannot be read
        model, meta = run.load_model()
        data.normalization = meta.get("normalization")
        notes.append(f"the run's data could not be loaded ({exc})")
    except CheckpointError as exc:  # a missing run (exit 2); or corrupt weights, a hash mismatch (exit 3)
        cls = ExportInputError if isinstance(exc, UserInputError) else ExportIntegrityError
        raise cls(f"cannot export {run_dir}: {exc}") from exc
    progress = or_null(progress)
    try:
        result = _export_model(model, Path(out_dir), options, progress, data)
    finally:
        progress.finish()
    result.warnings = notes + result.warnings
    triton = options.triton
    if triton is not None and triton.repository is not None:
        from aetk.export.triton import write_triton_repo

        result.triton = str(write_triton_repo(Path(out_dir), Path(triton.repository),
                                              triton.name or run_dir.resolve().name,
                                              max_batch_size=triton.max_batch, kind=triton.kind))
    write_report(result)
    return result


def write_report(result: ExportResult) -> Path:
    from aetk.atomic import atomic_write_text

    path = ExportDir(result.out_dir).report_file
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    return path


__all__ = ["DEFAULT_OPSET", "EXTERNAL_DATA_THRESHOLD", "ExportResult", "export_model", "export_run",
           "model_metadata", "prepare_out_dir", "to_onnx", "weights_sha256", "write_onnx", "write_report"]
