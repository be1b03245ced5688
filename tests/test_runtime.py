"""aetk.runtime: the torch-free ONNX Runtime layer, on small hand-built ONNX models
(tests/runtime_models.py) so these tests do not depend on the exporter."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import aetk.runtime as rt
from aetk.runtime import modelfile, providers

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("aetk_runtime_test_models", Path(__file__).with_name("runtime_models.py"))
rm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rm)

CUDA_OK = rt.probe_cuda().ok
needs_cuda = pytest.mark.skipif(not CUDA_OK, reason=f"no usable CUDA here: {rt.probe_cuda().detail}")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return {"dense": rm.write_export(base / "dense", "dense", ("float32", "float16", "int8")),
            "vae": rm.write_export(base / "vae", "vae"),
            "conv": rm.write_export(base / "conv", "conv")}


@pytest.fixture(scope="module")
def dense(exports):
    return rt.load_export(exports["dense"], device="cpu")


@pytest.fixture(scope="module")
def vae(exports):
    return rt.load_export(exports["vae"], device="cpu")


@pytest.fixture(scope="module")
def conv(exports):
    return rt.load_export(exports["conv"], device="cpu")


def images(n, seed=0, h=4, w=4):
    return np.random.default_rng(seed).random((n, 1, h, w)).astype(np.float32)


def _subprocess_env():
    return os.environ | {"PYTHONPATH": str(ROOT)}


# -- import hygiene --------------------------------------------------------------------------
def test_import_loads_neither_torch_nor_onnxruntime(tmp_path):
    code = ("import sys, aetk.runtime, aetk.runtime.metadata\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxruntime')"
            " or m.startswith(('aetk.models', 'aetk.train', 'aetk.data', 'aetk.native')))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_subprocess_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_runs_where_torch_cannot_be_imported(exports, tmp_path):
    x = images(5, seed=3)
    np.save(tmp_path / "x.npy", x)
    z, y = rm.dense_ref(x)
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('torch', 'onnx'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit('torch imported despite the block')
        import numpy as np
        import aetk.runtime as rt
        x = np.load({str(tmp_path / 'x.npy')!r})
        m = rt.load_model({str(exports['dense'] / 'encoder.onnx')!r}, device='auto')
        np.save({str(tmp_path / 'z.npy')!r}, m.run(x)['z'])
        b = rt.load_export({str(exports['dense'])!r})
        np.save({str(tmp_path / 'y.npy')!r}, b.reconstruct(x))
        print('torch' in sys.modules, 'onnx' in sys.modules, m.device)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_subprocess_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "cuda" if CUDA_OK else "cpu"]
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), z, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), y, atol=1e-5)


def test_auto_device_falls_back_without_noise(exports, tmp_path):
    """onnxruntime-gpu lists CUDA even without a GPU; "auto" must not make ORT shout."""
    script = (f"import aetk.runtime as rt; m = rt.load_model({str(exports['dense'] / 'encoder.onnx')!r}); "
              f"print(m.device, m.providers)")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_subprocess_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.startswith("cuda" if CUDA_OK else "cpu ['CPUExecutionProvider']")


# -- loading and metadata ------------------------------------------------------------------
def test_load_model_reads_metadata_and_io(exports):
    m = rt.load_model(exports["conv"] / "encoder.onnx", device="cpu")
    assert m.metadata == rm.metadata("encoder", "conv")
    assert m.input_names == ["x"] and m.output_names == ["z"]
    assert m.input_shapes == {"x": ("batch", 1, "H", "W")}
    assert m.output_shapes == {"z": ("batch", 2, "h", "w")}
    assert m.providers == ["CPUExecutionProvider"] and m.device == "cpu"
    assert m.io_binding is False and m.batch_size == 256
    assert "encoder.onnx" in repr(m)


def test_bundle_matches_numpy_reference(dense, vae, conv):
    x = images(9)
    z, y = rm.dense_ref(x)
    np.testing.assert_allclose(dense.encode(x), z, atol=1e-5)
    np.testing.assert_allclose(dense.decode(z), y, atol=1e-5)
    np.testing.assert_allclose(dense.reconstruct(x), y, atol=1e-5)
    assert dense.encode(x).dtype == np.float32 and not dense.variational

    xv = np.random.default_rng(1).normal(size=(7, 6))
    mean, logvar, yv = rm.vae_ref(xv)
    got_mean, got_logvar = vae.encode_stats(xv)
    np.testing.assert_allclose(got_mean, mean, atol=1e-5)
    np.testing.assert_allclose(got_logvar, logvar, atol=1e-5)
    np.testing.assert_allclose(vae.encode(xv), mean, atol=1e-5)  # a VAE encodes to its mean
    np.testing.assert_allclose(vae.reconstruct(xv), yv, atol=1e-5)

    xc = images(3, h=8, w=12)
    zc = rm.conv_encode_ref(xc)
    np.testing.assert_allclose(conv.encode(xc), zc, atol=1e-5)
    np.testing.assert_allclose(conv.reconstruct(xc), rm.conv_decode_ref(zc), atol=1e-5)


def test_vae_reparameterize_and_encode_stats_rules(vae, dense):
    mean = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    logvar = np.array([[0.0, 1.0], [-2.0, 0.5]], np.float32)
    eps = np.array([[1.0, -0.5], [0.3, 2.0]], np.float32)
    np.testing.assert_allclose(vae.reparameterize(mean, logvar, eps), mean + np.exp(logvar / 2) * eps,
                               rtol=1e-6)
    a, b = vae.reparameterize(mean, logvar, seed=5), vae.reparameterize(mean, logvar, seed=5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(rt.RuntimeModelError, match="variational"):
        dense.encode_stats(images(2))
    with pytest.raises(rt.RuntimeModelError, match="sample.onnx"):
        dense.reparameterize(mean, logvar)


def test_raw_inputs_use_the_metadata_normalization(dense, vae):
    raw = (images(4) * 255).round().astype(np.uint8)  # uint8 pixels straight from an image file
    x = raw.astype(np.float32) / 255
    np.testing.assert_allclose(dense.preprocess(raw), x, rtol=1e-6)
    np.testing.assert_allclose(dense.encode(raw, raw=True), dense.encode(x), rtol=1e-6)
    y = dense.reconstruct(x)
    np.testing.assert_allclose(dense.reconstruct(raw, raw=True), y * 255, rtol=1e-5)
    np.testing.assert_allclose(dense.decode(dense.encode(x), raw=True), y * 255, rtol=1e-5)
    np.testing.assert_allclose(dense.postprocess(y), y * 255, rtol=1e-6)

    xv = np.random.default_rng(2).normal(3, 2, size=(5, 6))
    std_x = (xv - rm.VAE_MEAN) / rm.VAE_STD
    np.testing.assert_allclose(vae.encode(xv, raw=True), vae.encode(std_x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vae.reconstruct(xv, raw=True),
                               vae.reconstruct(std_x) * rm.VAE_STD + rm.VAE_MEAN, rtol=1e-5, atol=1e-5)


def test_precision_variants(exports, dense):
    half = rt.load_export(exports["dense"], device="cpu", precision="float16")
    assert half.models["encoder"].input_dtypes["x"] == np.float16
    assert half.metadata.precision == "float16"
    x = images(6)
    out = half.encode(x)  # float32 in, float32 out, float16 inside
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, dense.encode(x), atol=3e-3)
    int8 = rt.load_export(exports["dense"], device="cpu", precision="int8")
    assert int8.models["decoder"].path.name == "decoder.int8.onnx"
    assert rt.available_precisions(exports["dense"]) == ["float32", "float16", "int8"]
    with pytest.raises(rt.ModelFileError, match=r"no float16 graphs.*it has precisions float32"):
        rt.load_export(exports["vae"], precision="float16")
    with pytest.raises(rt.RuntimeModelError, match="precision='fp8'"):
        rt.load_export(exports["dense"], precision="fp8")


# -- devices, threads, IOBinding, batching ---------------------------------------------------
def test_device_argument_is_checked(exports, monkeypatch):
    path = exports["dense"] / "encoder.onnx"
    for bad in ("gpu", "cuda:x", 3):
        with pytest.raises(rt.RuntimeModelError, match="device"):
            rt.load_model(path, device=bad)
    assert rt.available_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(providers, "probe_cuda", lambda: providers.CudaProbe(False, "no driver here"))
    assert rt.available_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(rt.ProviderUnavailableError, match=r"device='cuda'.*no driver here.*device='cpu'"):
        rt.load_model(path, device="cuda")
    assert isinstance(rt.ProviderUnavailableError("x"), RuntimeError)
    assert rt.load_model(path, device="auto").device == "cpu"
    monkeypatch.setattr(providers, "probe_cuda", lambda: providers.CudaProbe(True, "1 CUDA device(s)", 1))
    assert rt.available_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    choice = providers.choose_providers("cuda:0", {"arena_extend_strategy": "kSameAsRequested"})
    assert choice.providers[0] == ("CUDAExecutionProvider",
                                   {"device_id": "0", "arena_extend_strategy": "kSameAsRequested"})
    with pytest.raises(rt.ProviderUnavailableError, match="only 1 CUDA device"):
        providers.choose_providers("cuda:1")


def test_cuda_probe_is_not_fooled_by_the_gpu_wheel():
    import onnxruntime as ort

    probe = rt.probe_cuda()
    try:
        ctypes.CDLL("libcuda.so.1")
        has_driver = True
    except OSError:
        has_driver = False
    if not has_driver:  # like this CPU-only machine, where the onnxruntime-gpu wheel still lists CUDA
        assert not probe.ok and "libcuda.so.1" in probe.detail
    if probe.ok:
        assert probe.device_count >= 1 and "CUDAExecutionProvider" in ort.get_available_providers()
    else:
        with pytest.raises(rt.ProviderUnavailableError, match="CUDA is not available"):
            providers.choose_providers("cuda")


@needs_cuda
def test_cuda_matches_cpu_with_io_binding(exports):
    x = images(300)
    gpu = rt.load_model(exports["dense"] / "autoencoder.onnx", device="cuda", batch_size=128)
    assert gpu.device == "cuda" and gpu.io_binding is True
    assert gpu.providers[0] == "CUDAExecutionProvider"
    cpu = rt.load_model(exports["dense"] / "autoencoder.onnx", device="cpu")
    np.testing.assert_allclose(gpu.run(x)["x_hat"], cpu.run(x)["x_hat"], atol=1e-5)
    b = rt.load_export(exports["conv"], device="cuda")
    xc = images(4, h=10, w=6)
    np.testing.assert_allclose(b.reconstruct(xc), rt.load_export(exports["conv"], device="cpu").reconstruct(xc),
                               atol=1e-5)


def test_threads_are_passed_to_onnxruntime(exports):
    path = exports["dense"] / "encoder.onnx"
    m = rt.load_model(path, device="cpu", threads=2, inter_threads=2)
    assert m.threads == (2, 2)
    assert rt.load_model(path, device="cpu").threads == (0, 0)  # onnxruntime's defaults
    for arg in ("threads", "inter_threads", "batch_size"):
        for bad in (0, -1, "2", 1.5, True):
            with pytest.raises(rt.RuntimeModelError, match=arg):
                rt.load_model(path, device="cpu", **{arg: bad})
    with pytest.raises(rt.RuntimeModelError, match="io_binding"):
        rt.load_model(path, device="cpu", io_binding="yes")
    with pytest.raises(rt.RuntimeModelError, match="log_level"):
        rt.load_model(path, device="cpu", settings=rt.SessionSettings(log_level="loud"))
    key = "session.intra_op.allow_spinning"
    quiet = rt.load_model(path, device="cpu", settings=rt.SessionSettings(spinning=False))
    quiet = quiet.session.get_session_options()
    assert quiet.get_session_config_entry(key) == "0"  # servers: idle threads sleep
    default = rt.load_model(path, device="cpu").session.get_session_options()
    with pytest.raises(RuntimeError, match="allow_spinning"):  # not set: onnxruntime's own (spin)
        default.get_session_config_entry(key)


def test_io_binding_path_on_cpu(exports):
    path = exports["vae"] / "encoder.onnx"
    plain = rt.load_model(path, device="cpu", io_binding=False)
    bound = rt.load_model(path, device="cpu", io_binding=True, batch_size=4)
    calls = []
    original = bound.session.io_binding
    bound.session.io_binding = lambda: calls.append(1) or original()
    x = np.random.default_rng(4).normal(size=(10, 6)).astype(np.float32)
    got, want = bound.run(x), plain.run(x)
    assert len(calls) == 3  # 10 rows in chunks of 4, one binding per chunk
    assert list(got) == ["mean", "logvar"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_batches_are_split_and_joined(exports):
    m = rt.load_model(exports["dense"] / "autoencoder.onnx", device="cpu", batch_size=7)
    calls = []
    original = m.session.run
    m.session.run = lambda *a, **k: calls.append(len(a[1]["x"])) or original(*a, **k)
    x = images(100, seed=8)
    chunked = m.run(x)["x_hat"]
    assert calls == [7] * 14 + [2]
    whole = m.run(x, batch_size=None)["x_hat"]
    assert calls[-1] == 100
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_allclose(whole, rm.dense_ref(x)[1], atol=1e-5)
    empty = m.run(np.zeros((0, 1, 4, 4), np.float32))["x_hat"]
    assert empty.shape == (0, 1, 4, 4)
    with pytest.raises(rt.RuntimeModelError, match="batch_size"):
        m.run(x, batch_size=0)


# -- input validation ------------------------------------------------------------------------
def test_wrong_shapes_name_input_and_expectation(dense, vae):
    enc = dense.graph("encoder")
    with pytest.raises(rt.InputShapeError, match=r"input 'x' expects shape \(batch, 1, 4, 4\), got \(2, 1, 5, 4\)"):
        enc.run(np.zeros((2, 1, 5, 4)))
    with pytest.raises(rt.InputShapeError, match=r"got \(1, 4, 4\); for one example add a batch axis"):
        enc.run(np.zeros((1, 4, 4)))
    with pytest.raises(rt.InputShapeError, match=r"got \(16,\)$"):
        enc.run(np.zeros(16))
    with pytest.raises(rt.InputShapeError, match="rectangular"):
        dense.decode([[1.0, 2.0, 3.0], [1.0]])
    smp = vae.graph("sample")
    with pytest.raises(rt.InputShapeError, match="different batch sizes"):
        smp.run({"mean": np.zeros((2, 2)), "logvar": np.zeros((3, 2)), "eps": np.zeros((2, 2))})
    with pytest.raises(rt.InputShapeError, match=r"missing: \['eps'\]"):
        smp.run({"mean": np.zeros((2, 2)), "logvar": np.zeros((2, 2))})
    with pytest.raises(rt.InputShapeError, match=r"unknown: \['z'\]"):
        smp.run({"mean": 0, "logvar": 0, "eps": 0, "z": 0})
    with pytest.raises(rt.InputShapeError, match="pass a dict"):
        smp.run(np.zeros((2, 2)))
    assert isinstance(rt.InputShapeError("x"), ValueError)


def test_dtypes_cast_or_refused(dense):
    x = images(3)
    ints = (x * 10).astype(np.int64)
    np.testing.assert_allclose(dense.encode(ints), dense.encode(ints.astype(np.float32)), rtol=1e-6)
    np.testing.assert_allclose(dense.encode(x.astype(np.float64)), dense.encode(x), rtol=1e-6)
    bools = x > 0.5
    np.testing.assert_allclose(dense.encode(bools), dense.encode(bools.astype(np.float32)), rtol=1e-6)
    for bad in (np.array([[["a"] * 4] * 4]).reshape(1, 1, 4, 4), np.zeros((1, 1, 4, 4), complex),
                np.zeros((1, 1, 4, 4), object), [[[[1.0, None, 2.0, 3.0]] * 4]]):
        with pytest.raises(rt.InputDTypeError, match=r"input 'x' must be a real numeric array \(the graph takes float32\)"):
            dense.encode(bad)
    assert isinstance(rt.InputDTypeError("x"), TypeError)


def test_non_finite_values_pass_through(dense):
    x = images(2)
    x[0, 0, 0, 0] = np.nan
    x[1, 0, 1, 1] = np.inf
    z = dense.encode(x)
    assert np.isnan(z[0]).all() and np.isfinite(dense.encode(images(1))).all()


def test_dynamic_spatial_sizes(conv, exports):
    enc, dec, ae = conv.graph("encoder"), conv.graph("decoder"), conv.graph("autoencoder")
    assert enc.describe_input("x") == "(batch, 1, H, W) with H and W multiples of 4"
    assert ae.pads and not enc.pads and not dec.pads
    x = images(2, seed=5, h=12, w=16)
    np.testing.assert_allclose(enc.run(x)["z"], rm.conv_encode_ref(x), atol=1e-5)
    z = np.random.default_rng(6).normal(size=(2, 2, 3, 5)).astype(np.float32)  # codes: any h x w
    np.testing.assert_allclose(dec.run(z)["x_hat"], rm.conv_decode_ref(z), atol=1e-5)
    odd = images(2, seed=7, h=10, w=7)
    with pytest.raises(rt.InputShapeError, match=r"\(batch, 1, H, W\) with H and W multiples of 4, got "
                                                 r"\(2, 1, 10, 7\): 10 x 7 are not all multiples of 4"):
        enc.run(odd)
    # the autoencoder reflect-pads to 12 x 8 and crops back to 10 x 7
    padded = np.pad(odd, ((0, 0), (0, 0), (0, 2), (0, 1)), mode="reflect")
    want = rm.conv_decode_ref(rm.conv_encode_ref(padded))[:, :, :10, :7]
    got = ae.run(odd)["x_hat"]
    assert got.shape == odd.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(conv.reconstruct(odd), want, atol=1e-5)
    with pytest.raises(rt.InputShapeError, match=r"expects shape \(batch, 1, H, W\).*got \(2, 3, 10, 7\)"):
        ae.run(np.zeros((2, 3, 10, 7)))  # wrong channels: reported with the caller's shape
    # without autoencoder.onnx the bundle composes encoder and decoder with the same rule
    folder = exports["conv"].parent / "conv-no-ae"
    shutil.copytree(exports["conv"], folder)
    (folder / "autoencoder.onnx").unlink()
    composed = rt.load_export(folder, device="cpu")
    assert not composed.has("autoencoder")
    np.testing.assert_allclose(composed.reconstruct(odd), want, atol=1e-5)


# -- files: existence, format, metadata, external data --------------------------------------
def test_bad_files_name_the_file(tmp_path, exports):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(rt.ModelNotFoundError, match="nope.onnx does not exist") as err:
        rt.load_model(missing)
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(rt.ModelFileError, match="is a folder"):
        rt.load_model(tmp_path)
    for name, data in (("text.onnx", b"hello, this is not a model\n"), ("empty.onnx", b""),
                       ("truncated.onnx", (exports["dense"] / "encoder.onnx").read_bytes()[:-7])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(rt.ModelFileError, match=f"{name}.*(not an ONNX model|is empty)"):
            rt.load_model(tmp_path / name)
    plain = onnx.load(str(exports["dense"] / "encoder.onnx"))
    del plain.metadata_props[:]
    rm.save(plain, tmp_path / "plain.onnx")
    with pytest.raises(rt.MetadataError, match=r"plain.onnx lacks aetk metadata aetk.kind.*aetk export"):
        rt.load_model(tmp_path / "plain.onnx", device="cpu")
    assert issubclass(rt.MetadataError, rt.RuntimeModelError)


def test_export_folder_errors(tmp_path, exports):
    with pytest.raises(rt.ModelNotFoundError, match="export folder .*missing does not exist"):
        rt.load_export(tmp_path / "missing")
    with pytest.raises(rt.ModelFileError, match="is a file"):
        rt.load_export(exports["dense"] / "encoder.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(rt.ModelFileError, match="has no float32 graphs"):
        rt.load_export(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    shutil.copytree(exports["dense"], mixed)
    shutil.copy(exports["vae"] / "decoder.onnx", mixed / "decoder.onnx")
    with pytest.raises(rt.MetadataError, match="decoder.onnx: aetk metadata kind='vae' disagrees"):
        rt.load_export(mixed)
    swapped = tmp_path / "swapped"
    shutil.copytree(exports["dense"], swapped)
    shutil.copy(exports["dense"] / "decoder.onnx", swapped / "encoder.onnx")
    with pytest.raises(rt.MetadataError, match="graph='decoder', but the file name says 'encoder'"):
        rt.load_export(swapped)
    only_dec = tmp_path / "only-decoder"
    only_dec.mkdir()
    shutil.copy(exports["dense"] / "decoder.onnx", only_dec)
    b = rt.load_export(only_dec, device="cpu")
    with pytest.raises(rt.RuntimeModelError, match="has no encoder.onnx"):
        b.encode(images(1))


def _external_model(folder: Path, location: str = "weights.bin") -> Path:
    return rm.save(rm.dense_graphs()["encoder"], folder / "encoder.onnx", external=location)


def test_external_data_inside_the_folder_loads(tmp_path):
    x = images(3)
    for sub, location in (("flat", "weights.bin"), ("nested", "data/weights.bin")):
        path = _external_model(tmp_path / sub, location)
        assert (tmp_path / sub / location).is_file()
        _, refs = modelfile.scan(path.read_bytes())
        assert {r.location for r in refs} == {location} and len(refs) == 2
        np.testing.assert_allclose(rt.load_model(path, device="cpu").run(x)["z"], rm.dense_ref(x)[0],
                                   atol=1e-5)
    # a symlink that stays inside the folder is fine
    inner = tmp_path / "inner"
    path = _external_model(inner, "real.bin")
    os.symlink("real.bin", inner / "alias.bin")
    rm.set_external_location(path, "alias.bin")
    assert rt.load_model(path, device="cpu").run(x)["z"].shape == (3, 3)


def test_external_data_outside_the_folder_is_refused(tmp_path, monkeypatch):
    import onnxruntime as ort

    def no_session(*a, **k):
        raise AssertionError("a session was created before the external-data check")

    outside = tmp_path / "outside"
    _external_model(outside, "secret.bin")
    model_dir = tmp_path / "model"
    path = _external_model(model_dir)
    monkeypatch.setattr(ort, "InferenceSession", no_session)
    cases = {str(outside / "secret.bin"): "an absolute path", "../outside/secret.bin": "a '..' component",
             "data/../../outside/secret.bin": "a '..' component", "C:\\x\\w.bin": "an absolute path",
             "..\\outside\\secret.bin": "a '..' component", "missing.bin": "missing",
             "": "an empty location"}
    for location, why in cases.items():
        rm.set_external_location(path, location)
        with pytest.raises(rt.ExternalDataError, match=f"encoder.onnx: tensor 'W1' has external data .*{why}"):
            rt.load_model(path)
    os.symlink(outside / "secret.bin", model_dir / "link.bin")
    rm.set_external_location(path, "link.bin")
    with pytest.raises(rt.ExternalDataError, match="outside the model's folder"):
        rt.load_model(path)
    os.symlink(outside, model_dir / "linkdir")
    rm.set_external_location(path, "linkdir/secret.bin")
    with pytest.raises(rt.ExternalDataError, match="outside the model's folder"):
        rt.load_model(path)
    (model_dir / "tiny.bin").write_bytes(b"1234")
    rm.set_external_location(path, "tiny.bin")
    with pytest.raises(rt.ExternalDataError, match="beyond the end"):
        rt.load_model(path)
    with pytest.raises(rt.ExternalDataError):  # load_export checks every graph the same way
        rt.load_export(model_dir)


def test_external_data_found_in_subgraphs_and_constants(tmp_path):
    """Tensors hide in Constant nodes and If branches too; the scan must reach them."""
    from onnx import TensorProto, helper, numpy_helper

    big = numpy_helper.from_array(np.ones((4, 4), np.float32), "c")
    big.data_location = TensorProto.EXTERNAL
    big.ClearField("raw_data")
    entry = big.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    const = helper.make_node("Constant", [], ["y"], value=big)
    branch = helper.make_graph([const], "b", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])])
    node = helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, 4])])
    data = helper.make_model(graph).SerializeToString()
    has_graph, refs = modelfile.scan(data)
    assert has_graph and [r.location for r in refs] == ["/etc/passwd"] * 2 and refs[0].tensor == "c"
    (tmp_path / "m.onnx").write_bytes(data)
    with pytest.raises(rt.ExternalDataError, match="an absolute path"):
        rt.load_model(tmp_path / "m.onnx")


def test_scan_schema_matches_onnx_proto():
    types = {"Model": onnx.ModelProto, "TrainingInfo": onnx.TrainingInfoProto, "Function": onnx.FunctionProto,
             "Graph": onnx.GraphProto, "Node": onnx.NodeProto, "Attribute": onnx.AttributeProto,
             "Sparse": onnx.SparseTensorProto, "Tensor": onnx.TensorProto}
    for kind, fields in modelfile._SCHEMA.items():
        by_number = types[kind].DESCRIPTOR.fields_by_number
        for number, child in fields.items():
            assert by_number[number].message_type.name == types[child].DESCRIPTOR.name, (kind, number)
    tensor = onnx.TensorProto.DESCRIPTOR.fields_by_name
    assert tensor["name"].number == modelfile._TENSOR_NAME
    assert tensor["external_data"].number == modelfile._TENSOR_EXTERNAL_DATA
    assert onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number == modelfile._MODEL_GRAPH


# -- with the real exporter ----------------------------------------------------------------------
def test_exported_conv_model_matches_pytorch(tmp_path):
    """One real `aetk export` folder (fully convolutional, any H x W that is a multiple of 4)."""
    import torch

    from aetk.export import export_model
    from aetk.models import create_model
    from aetk.normalization import Normalization

    torch.manual_seed(0)
    model = create_model("conv", (1, 16, 16), channels=[4, 8], code_size=0).eval()
    export_model(model, tmp_path / "out", normalization=Normalization.unit(255.0).to_dict())
    b = rt.load_export(tmp_path / "out", device="cpu")
    assert b.metadata.dynamic_spatial and b.metadata.spatial_multiple == 4
    assert all(isinstance(d, str) for d in b.graph("autoencoder").input_shapes["x"][2:])  # dynamic H, W

    x = images(3, seed=11, h=16, w=20)
    with torch.no_grad():
        out = model(torch.from_numpy(x))
        z_torch = model.encode(torch.from_numpy(x))
    np.testing.assert_allclose(b.encode(x), z_torch.numpy(), atol=1e-5)
    np.testing.assert_allclose(b.reconstruct(x), out["x_hat"].numpy(), atol=1e-5)
    np.testing.assert_allclose(b.decode(b.encode(x)), out["x_hat"].numpy(), atol=1e-5)
    raw = (x * 255).round()
    np.testing.assert_allclose(b.reconstruct(raw, raw=True), b.reconstruct(raw / 255) * 255, rtol=1e-5)
    # an odd size: the runtime reflect-pads to 20 x 16, PyTorch on the same padded input agrees
    odd = images(2, seed=12, h=18, w=13)
    padded = np.pad(odd, ((0, 0), (0, 0), (0, 2), (0, 3)), mode="reflect")
    with torch.no_grad():
        want = model(torch.from_numpy(padded))["x_hat"].numpy()[:, :, :18, :13]
    np.testing.assert_allclose(b.reconstruct(odd), want, atol=1e-5)
    with pytest.raises(rt.InputShapeError, match="multiples of 4"):
        b.encode(odd)
