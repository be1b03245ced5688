"""aetk export: every registered kind to validated ONNX, metadata, variants, Triton, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from aetk.export import (ExportError, ExportOptions, OnnxCheckError, OutputNameMismatch, OutputShapeMismatch,
                         OutputValueMismatch, export_model, export_run)
from aetk.export.validate import compare_outputs, validate_graph
from aetk.models import create_model, model_names
from aetk.runtime.metadata import ModelMetadata

# One small model per registered kind: (input shape, options).
KIND_CASES = {
    "ae": ((20,), {"code_size": 6}),
    "deep": ((20,), {"widths": [12, 4]}),
    "sparse": ((20,), {"code_size": 8, "hidden": [12]}),
    "conv": ((1, 12, 12), {"channels": [4, 8], "code_size": 5}),
    "denoising": ((20,), {"base": "deep", "base_params": {"widths": [12, 4]}}),
    "contractive": ((20,), {"code_size": 6}),
    "vae": ((20,), {"latent_dim": 3, "hidden": [12]}),
    "stacked": ((20,), {"widths": [12, 4]}),
    "lstm": ((7, 3), {"hidden_size": 8, "code_size": 4}),
    "resconv": ((1, 8, 8), {"features": 4, "depth": 1}),
    "resunet": ((3, 16, 16), {"width": 4, "blocks": 1, "scales": 2, "estimator_width": 4}),
}


def test_every_registered_kind_has_an_export_test():
    assert sorted(KIND_CASES) == model_names(), "a model kind was added without an export test case"


def _model(kind: str):
    shape, params = KIND_CASES[kind]
    torch.manual_seed(0)
    model = create_model(kind, shape, **params).eval()
    # Untrained BatchNorm statistics are trivial; make them not so.
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.mark.parametrize("kind", sorted(KIND_CASES))
def test_export_every_kind(kind, tmp_path):
    model = _model(kind)
    shape = KIND_CASES[kind][0]
    real = torch.rand(16, *shape)
    result = export_model(model, tmp_path, real_batch=real)
    vae = kind == "vae"
    graphs = ["encoder", "decoder", "autoencoder"] + (["sample"] if vae else [])
    assert sorted(result.files) == sorted(graphs)
    assert not list(tmp_path.glob("*.data")), "small models must be self-contained"
    assert not list(tmp_path.glob(".aetk-export-*")), "the staging folder must be gone"
    report = json.loads((tmp_path / "export.json").read_text())
    assert set(report["validation"]) == set(graphs)
    assert set(report["validation"]["encoder"]) - {"random_resized"} == {"random", "real"}

    for g in graphs:
        proto = onnx.load(str(tmp_path / f"{g}.onnx"))
        ops = {(n.domain, n.op_type) for n in proto.graph.node}
        assert not any("Random" in op for _, op in ops), f"{g} has a random node: {ops}"
        assert all(d in ("", "ai.onnx") for d, _ in ops), f"{g} uses a custom op domain: {ops}"
        assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
        for value in proto.graph.input:
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
        meta = ModelMetadata.from_props(_props(tmp_path / f"{g}.onnx"), g)
        assert meta.kind == kind and meta.graph == g and meta.input_shape == list(shape)
        assert meta.code_shape == list(model.code_shape)
        assert len(meta.weights_sha256) == 64 and meta.variational == vae

    # A batch size never seen at export time, against PyTorch.
    x = torch.rand(5, *shape)
    with torch.no_grad():
        if vae:
            mean, logvar = model.encode_stats(x)
            want_enc = [mean, logvar]
            z = mean
        else:
            z = model.encode(x)
            want_enc = [z]
        x_hat = model.decode(z)
    got_enc = _ort(tmp_path / "encoder.onnx", {"x": x.numpy()})
    assert [o.name for o in onnx.load(str(tmp_path / "encoder.onnx")).graph.output] == (
        ["mean", "logvar"] if vae else ["z"])
    for got, want in zip(got_enc, want_enc):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(_ort(tmp_path / "decoder.onnx", {"z": z.numpy()})[0], x_hat.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(_ort(tmp_path / "autoencoder.onnx", {"x": x.numpy()})[0], x_hat.numpy(),
                               atol=1e-5, rtol=1e-5)
    if vae:
        eps = np.random.default_rng(0).standard_normal(mean.shape).astype(np.float32)
        z_s = _ort(tmp_path / "sample.onnx", {"mean": mean.numpy(), "logvar": logvar.numpy(), "eps": eps})[0]
        np.testing.assert_allclose(z_s, mean.numpy() + np.exp(0.5 * logvar.numpy()) * eps, atol=1e-5, rtol=1e-5)


def test_weights_hash_tracks_the_weights(tmp_path):
    model = _model("deep")
    export_model(model, tmp_path / "a")
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3
    export_model(model, tmp_path / "b")
    ha = _props(tmp_path / "a" / "encoder.onnx")["aetk.weights_sha256"]
    hb = _props(tmp_path / "b" / "encoder.onnx")["aetk.weights_sha256"]
    assert ha != hb
    assert ha == _props(tmp_path / "a" / "decoder.onnx")["aetk.weights_sha256"]


def test_fully_convolutional_model_takes_any_multiple_of_its_stride(tmp_path):
    model = create_model("conv", (1, 16, 16), channels=[4, 8], code_size=0).eval()
    assert model.spatial_multiple == 4
    result = export_model(model, tmp_path)
    assert "random_resized" in result.validation["autoencoder"]
    proto = onnx.load(str(tmp_path / "autoencoder.onnx"))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    meta = ModelMetadata.from_props(_props(tmp_path / "autoencoder.onnx"))
    assert meta.dynamic_spatial and meta.spatial_multiple == 4
    x = torch.rand(2, 1, 24, 40)
    with torch.no_grad():
        want = model.decode(model.encode(x))
    got = _ort(tmp_path / "autoencoder.onnx", {"x": x.numpy()})[0]
    assert got.shape == (2, 1, 24, 40)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)


def test_resconv_with_context_exports_for_any_multiple_of_8(tmp_path):
    model = create_model("resconv", (1, 16, 16), features=4, depth=2, context=3).eval()
    torch.nn.init.normal_(model.context.up1.weight)  # the branch must be in the graph, not zero
    export_model(model, tmp_path)
    assert ModelMetadata.from_props(_props(tmp_path / "autoencoder.onnx")).spatial_multiple == 8
    x = torch.rand(2, 1, 24, 40)
    with torch.no_grad():
        want = model.decode(model.encode(x))
    got = _ort(tmp_path / "autoencoder.onnx", {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)


def test_conv_with_a_bottleneck_stays_fixed_size(tmp_path):
    model = _model("conv")
    assert model.spatial_multiple is None
    export_model(model, tmp_path)
    dims = [d.dim_param or d.dim_value
            for d in onnx.load(str(tmp_path / "encoder.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 12, 12]


def test_fp16_and_int8_variants_report_their_accuracy(tmp_path):
    model = create_model("conv", (1, 12, 12), channels=[4, 8], code_size=6).eval()
    calib = torch.rand(96, 1, 12, 12)
    result = export_model(model, tmp_path, ExportOptions(fp16=True, int8=True), real_batch=torch.rand(16, 1, 12, 12),
                                                         calibration=calib)
    for g in ("encoder", "decoder", "autoencoder"):
        for tag, precision in (("fp16", "float16"), ("int8", "int8")):
            path = tmp_path / f"{g}.{tag}.onnx"
            assert path.is_file()
            assert _props(path)["aetk.precision"] == precision
            acc = result.variants[f"{g}.{tag}"]
            out = "z" if g == "encoder" else "x_hat"
            assert 0 < acc[out]["max_abs_diff"] < 0.5
    ops = {n.op_type for n in onnx.load(str(tmp_path / "encoder.int8.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # static QDQ for conv models
    psnr = result.variants["autoencoder.int8"]["psnr_db"]
    assert psnr["change"] == pytest.approx(psnr["variant"] - psnr["float32"])
    fp16_types = {t.data_type for t in onnx.load(str(tmp_path / "encoder.fp16.onnx")).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in fp16_types
    # The variants keep float32 inputs and outputs: callers need not change.
    x = np.random.default_rng(1).random((3, 1, 12, 12), dtype=np.float32)
    assert _ort(tmp_path / "autoencoder.fp16.onnx", {"x": x})[0].dtype == np.float32


def test_float16_storage_halves_the_file_and_computes_in_float32(tmp_path, tool):
    from aetk.export.float16_storage import STORAGE_KEY, to_float16_storage

    main = tool("float16_storage").main

    model = create_model("resconv", (1, 16, 16), features=32, depth=3).eval()  # weights most of the file
    export_model(model, tmp_path / "out")
    src, dst = tmp_path / "out" / "autoencoder.onnx", tmp_path / "small.onnx"
    main([str(src), str(dst)])
    proto = onnx.load(str(dst))

    def weight_bytes(p, dtype):
        return sum(onnx.numpy_helper.to_array(t).nbytes for t in p.graph.initializer if t.data_type == dtype)

    assert weight_bytes(proto, onnx.TensorProto.FLOAT16) == weight_bytes(onnx.load(str(src)), onnx.TensorProto.FLOAT) / 2
    assert weight_bytes(proto, onnx.TensorProto.FLOAT) == 0
    assert dst.stat().st_size < 0.65 * src.stat().st_size
    casts = [n for n in proto.graph.node if n.op_type == "Cast"]
    assert casts and all(a.i == onnx.TensorProto.FLOAT for n in casts for a in n.attribute)
    assert _props(dst)[STORAGE_KEY] == "float16" and _props(dst)["aetk.kind"] == "resconv"
    x = np.random.default_rng(0).random((2, 1, 24, 32), dtype=np.float32)
    want, got = _ort(src, {"x": x})[0], _ort(dst, {"x": x})[0]
    assert got.dtype == np.float32 and 0 < np.abs(got - want).max() < 1e-2  # rounded weights, nothing more
    with pytest.raises(SystemExit, match="is not a file"):
        main([str(tmp_path / "missing.onnx"), str(dst)])
    with pytest.raises(SystemExit, match="OUT .* is IN"):
        main([str(src), str(src)])
    (tmp_path / "text.onnx").write_text("not a graph")
    with pytest.raises(SystemExit, match="is not an ONNX graph"):
        main([str(tmp_path / "text.onnx"), str(tmp_path / "out2.onnx")])
    assert not (tmp_path / "out2.onnx").exists()
    big = onnx.load(str(src))
    big.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.full((2,), 1e6, np.float32),
                                                                    big.graph.initializer[0].name))
    with pytest.raises(ExportError, match="beyond float16's range"):
        to_float16_storage(big)


def test_int8_of_an_mlp_is_dynamic(tmp_path):
    export_model(_model("deep"), tmp_path, ExportOptions(int8=True))
    ops = {n.op_type for n in onnx.load(str(tmp_path / "encoder.int8.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, ops


def test_int8_of_a_conv_model_needs_calibration_data(tmp_path):
    with pytest.raises(ExportError, match="calibration"):
        export_model(create_model("conv", (1, 12, 12), channels=[4], code_size=3), tmp_path, ExportOptions(int8=True))


def test_old_opset_warns(tmp_path):
    with pytest.warns(UserWarning, match="opset 17"):
        try:
            export_model(_model("ae"), tmp_path, ExportOptions(opset=17))
        except ExportError:
            pass  # refusing is fine too; the warning is what is tested


def test_large_models_keep_weights_beside_the_file(tmp_path):
    import aetk.runtime as rt

    model = create_model("deep", (64,), widths=[32, 4]).eval()  # a 64x32 weight: 8 kB
    result = export_model(model, tmp_path, ExportOptions(external_data_threshold=4096))
    assert (tmp_path / "encoder.onnx.data").is_file()
    assert (tmp_path / "encoder.onnx.data").stat().st_size >= 64 * 32 * 4
    assert result.validation["encoder"]["random"]["z"]["max_abs_diff"] < 1e-5
    x = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    bundle = rt.load_export(tmp_path, device="cpu")
    with torch.no_grad():
        want = model.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(bundle.encode(x), want, atol=1e-5, rtol=1e-5)


# -- validation errors are typed ------------------------------------------------------------------------
def test_compare_outputs_names_shapes_values():
    want = {"z": np.zeros((2, 3), np.float32)}
    with pytest.raises(OutputNameMismatch):
        compare_outputs({"y": np.zeros((2, 3), np.float32)}, want, "encoder", "random")
    with pytest.raises(OutputShapeMismatch, match=r"\(2, 4\)"):
        compare_outputs({"z": np.zeros((2, 4), np.float32)}, want, "encoder", "random")
    with pytest.raises(OutputValueMismatch) as info:
        compare_outputs({"z": np.full((2, 3), 1e-3, np.float32)}, want, "encoder", "real")
    assert info.value.max_abs_diff == pytest.approx(1e-3) and info.value.output == "z"
    assert "aetk export --atol" in str(info.value)  # says how to accept float32 rounding
    with pytest.raises(OutputValueMismatch):
        compare_outputs({"z": np.full((2, 3), np.nan, np.float32)}, want, "encoder", "real")
    assert compare_outputs({"z": np.full((2, 3), 5e-6, np.float32)}, want, "e", "r")["z"]["max_abs_diff"] < 1e-5


def test_validation_catches_a_graph_that_differs_from_pytorch(tmp_path):
    model = _model("ae")
    export_model(model, tmp_path)
    other = _model("ae")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01)
    from aetk.export.graphs import EncoderGraph

    with pytest.raises(OutputValueMismatch, match="encoder.onnx output 'z'"):
        validate_graph((tmp_path / "encoder.onnx").read_bytes(), EncoderGraph(other), "encoder", ["z"],
                       {"random": {"x": torch.rand(4, 20)}})


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    import aetk.export.exporter as exporter

    def broken(*args, **kwargs):
        raise OutputValueMismatch("decoder.onnx output 'x_hat' differs", "decoder", "x_hat", 1.0, 1e-5)

    calls = {"n": 0}
    real_validate = exporter.validate_graph

    def second_fails(*args, **kwargs):
        calls["n"] += 1
        return real_validate(*args, **kwargs) if calls["n"] == 1 else broken()

    monkeypatch.setattr(exporter, "validate_graph", second_fails)
    with pytest.raises(OutputValueMismatch):
        export_model(_model("ae"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_checker_errors_are_typed():
    from aetk.export.validate import check_model

    bad = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["missing"], ["y"])], "g", [],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    with pytest.raises(OnnxCheckError, match="encoder.onnx fails the ONNX checker"):
        check_model(bad, "encoder")


# -- runs, the CLI, Triton, bad input -----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from aetk.config import load_config
    from aetk.artifacts import RunDir, train_run as train  # noqa: F401

    run = tmp_path_factory.mktemp("run") / "digits-conv"
    cfg = load_config(None, ["model.kind=\"conv\"", "data.path=\"digits\"", "train.epochs=1",
                             "model.channels=[4, 8]", "model.code_size=6", "train.progress=false"])
    train(cfg, run)
    return run


def test_cli_export_with_triton_repository(trained_run, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2
    from typer.testing import CliRunner

    from aetk.cli.main import app

    out, repo = tmp_path / "out", tmp_path / "repo"
    res = CliRunner().invoke(app, ["export", str(trained_run), "-o", str(out), "--int8", "--triton", str(repo)])
    assert res.exit_code == 0, res.output
    assert "autoencoder.int8.onnx" in res.output
    report = json.loads((out / "export.json").read_text())
    assert "real" in report["validation"]["autoencoder"]  # validated on the run's own data
    norm = json.loads(_props(out / "encoder.onnx")["aetk.normalization"])
    assert norm["kind"] == "unit" and norm["scale"] == pytest.approx(16.0)  # digits are 0..16

    for graph in ("encoder", "decoder", "autoencoder"):
        name = f"digits-conv_{graph}"
        cfg = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        proto = onnx.load(str(repo / name / "1" / "model.onnx"))
        assert cfg.name == name and cfg.backend == "onnxruntime" and cfg.max_batch_size == 1024
        assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
        assert len(cfg.instance_group) == 1
        for values, configs in ((proto.graph.input, cfg.input), (proto.graph.output, cfg.output)):
            assert [v.name for v in values] == [c.name for c in configs]
            for v, c in zip(values, configs):
                onnx_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                assert list(c.dims) == onnx_dims[1:]
                assert c.data_type == model_config_pb2.TYPE_FP32
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert params["aetk.graph"] == graph and params["aetk.kind"] == "conv"


def test_cli_export_tolerances_reach_the_validation(trained_run, tmp_path):
    from typer.testing import CliRunner

    from aetk.cli.main import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["export", str(trained_run), "-o", str(out), "--atol", "1e-4", "--rtol", "0"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "export.json").read_text())["validation"]
    checked = [s for graph in report.values() for batch in graph.values() for s in batch.values()]
    assert checked and all(s["atol"] == 1e-4 and s["rtol"] == 0 for s in checked)
    res = CliRunner().invoke(app, ["export", str(trained_run), "-o", str(tmp_path / "o2"), "--atol", "-1"])
    assert res.exit_code != 0 and "--atol" in res.output
    assert not (tmp_path / "o2").exists()


def test_triton_config_marks_dynamic_spatial_dims(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from aetk.export.triton import write_triton_repo

    export_model(create_model("conv", (1, 16, 16), channels=[4, 8], code_size=0), tmp_path / "out")
    write_triton_repo(tmp_path / "out", tmp_path / "repo", "fc", kind="gpu", max_batch_size=8)
    cfg = text_format.Parse((tmp_path / "repo" / "fc_autoencoder" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert list(cfg.input[0].dims) == [1, -1, -1]
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert cfg.max_batch_size == 8
    with pytest.raises(ExportError, match="model name"):
        write_triton_repo(tmp_path / "out", tmp_path / "repo", "bad name/..")


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_run(tmp_path / "nope", tmp_path / "out")


def test_corrupt_checkpoint_is_a_clear_error(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ExportError, match="model.safetensors"):
        export_run(run, tmp_path / "out")
    (run / "model.json").write_text("{not json")
    with pytest.raises(ExportError, match="model.json"):
        export_run(run, tmp_path / "out")


def test_unwritable_output_folder_is_a_clear_error(trained_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="not writable|not a folder"):
        export_run(trained_run, blocker / "out")
    with pytest.raises(ExportError, match="not a folder"):
        export_run(trained_run, blocker)


def test_cli_reports_errors_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from aetk.cli.main import app

    res = CliRunner().invoke(app, ["export", str(tmp_path / "missing"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2  # a bad path (aetk/errors.py)
    assert "does not exist" in res.output and "Traceback" not in res.output
