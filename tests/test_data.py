"""aetk.data: readers (IDX, image folders, npy/npz, CSV, built-ins), normalization,
splits, streaming, and the errors for bad input -- all on small real data written to
tmp folders at run time."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from aetk.data import DataConfig, DataError, LoadedData, Normalization, load_data
from aetk.data import builtin, images
from aetk.data.idx import idx_header, read_idx, write_idx

FASHION = builtin.FASHION_MNIST_DIR


def load(path, **kw) -> LoadedData:
    return load_data(DataConfig(path=str(path), **kw))


def all_x(ds) -> np.ndarray:
    return np.stack([ds[i][0].numpy() for i in range(len(ds))])


# -- small real images ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pictures():
    """scikit-image's bundled pictures, shrunk to 24x32 (HxW): gray and RGB uint8."""
    from skimage import data

    def small(a):
        return np.asarray(Image.fromarray(a).resize((32, 24), Image.Resampling.BILINEAR))

    return {"gray": [small(data.camera()), small(data.coins()), small(data.moon())],
            "rgb": [small(data.astronaut()), small(data.coffee()), small(data.chelsea())]}


def save(a: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, **kw)
    return path


LOSSLESS = {"png": {}, "tif": {}, "bmp": {}, "webp": {"lossless": True}}


@pytest.mark.parametrize("color", ["gray", "rgb"])
@pytest.mark.parametrize("ext", ["png", "jpg", "tif", "bmp", "webp"])
def test_image_formats(tmp_path, pictures, ext, color):
    for k, a in enumerate(pictures[color]):
        save(a, tmp_path / f"img{k}.{ext}", **LOSSLESS.get(ext, {"quality": 95}))
    # WebP has no grayscale mode: gray pictures come back as RGB files, so pass channels=1
    d = load(tmp_path, channels=1 if (ext, color) == ("webp", "gray") else None)
    c = 1 if color == "gray" else 3
    assert d.input_shape == (c, 24, 32) and len(d.train) == 3 and d.test is None
    assert d.normalization.kind == "unit" and d.normalization.scale == 255
    assert d.value_range == (0.0, 1.0) and d.num_classes is None and d.skipped == []
    x, y = d.train[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and int(y) == -1
    want = pictures[color][0].astype(np.float32) / 255
    want = want[None] if color == "gray" else want.transpose(2, 0, 1)
    err = np.abs(x.numpy() - want)
    assert err.mean() < (0.03 if ext == "jpg" else 1e-6)


def test_sixteen_bit_gray_png_and_tiff(tmp_path, pictures):
    a16 = pictures["gray"][0].astype(np.uint16) * 257  # full 16-bit range
    save(a16, tmp_path / "a.png")
    save(a16, tmp_path / "b.tif")
    save(pictures["gray"][0], tmp_path / "c.png")  # 8-bit in a 16-bit folder: scaled by 257
    d = load(tmp_path)
    assert d.normalization.scale == 65535 and d.input_shape == (1, 24, 32)
    want = a16.astype(np.float32) / 65535
    for i in range(3):
        np.testing.assert_allclose(d.train[i][0].numpy()[0], want, atol=1e-6)
    np.testing.assert_allclose(d.normalization.invert(d.train[0][0].numpy())[0], a16, atol=0.05)


def test_channels_inferred_and_converted(tmp_path, pictures):
    save(pictures["gray"][0], tmp_path / "g.png")
    save(pictures["rgb"][0], tmp_path / "c.png")
    assert load(tmp_path).input_shape == (3, 24, 32)  # not all gray -> RGB
    d = load(tmp_path, channels=1)
    assert d.input_shape == (1, 24, 32)
    luma = np.asarray(Image.fromarray(pictures["rgb"][0]).convert("L"), np.float32) / 255
    np.testing.assert_allclose(d.train[0][0].numpy()[0], luma, atol=1e-6)  # sorted: c.png first
    gray_only = tmp_path / "gray"
    save(pictures["gray"][1], gray_only / "g.png")
    d = load(gray_only, channels=3)
    x = d.train[0][0].numpy()
    assert x.shape == (3, 24, 32) and np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])


def test_class_subfolders_give_labels(tmp_path, pictures):
    for cls, arrs in (("zebra", pictures["gray"][:2]), ("apple", pictures["gray"][2:])):
        for k, a in enumerate(arrs):
            save(a, tmp_path / cls / "deeper" / f"{k}.png")  # recursive, first level names
    d = load(tmp_path)
    assert d.classes == ["apple", "zebra"] and d.num_classes == 2
    assert sorted(int(d.train[i][1]) for i in range(3)) == [0, 1, 1]
    assert "2 classes" in d.describe()


def test_resize_and_center_crop(tmp_path, pictures):
    save(pictures["rgb"][0], tmp_path / "a.png")
    save(pictures["rgb"][1][:20, :30], tmp_path / "b.png")  # another size: fine with image_size
    d = load(tmp_path, image_size=[12, 16])
    assert d.input_shape == (3, 12, 16) and d.train[1][0].shape == (3, 12, 16)
    d = load(tmp_path, image_size=[10, 10], resize="crop")
    want = pictures["rgb"][0][7:17, 11:21].transpose(2, 0, 1) / 255  # center of 24x32
    np.testing.assert_allclose(d.train[0][0].numpy(), want, atol=1e-6)
    with pytest.raises(DataError, match=r"smaller than data.image_size.*resize='resize'"):
        load(tmp_path, image_size=[22, 32], resize="crop")


def test_large_jpeg_resized(tmp_path):
    from skimage import data

    save(data.astronaut(), tmp_path / "big.jpg", quality=95)  # 512x512: decoded at reduced scale
    x = load(tmp_path, image_size=[64, 48]).train[0][0].numpy()
    want = np.asarray(Image.fromarray(data.astronaut()).resize((48, 64), Image.Resampling.BILINEAR))
    assert x.shape == (3, 64, 48)
    assert np.abs(x - want.transpose(2, 0, 1) / 255).mean() < 0.03


def test_mixed_sizes_need_image_size(tmp_path, pictures):
    save(pictures["gray"][0], tmp_path / "a.png")
    save(pictures["gray"][1][:20], tmp_path / "b.png")
    with pytest.raises(DataError) as e:
        load(tmp_path)
    msg = str(e.value)
    assert "a.png is 24x32" in msg and "b.png is 20x32" in msg and "data.image_size" in msg


def test_corrupt_files_are_skipped_and_counted(tmp_path, pictures):
    save(pictures["gray"][0], tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    d = load(tmp_path)
    assert len(d.train) == 1
    assert sorted(Path(f).name for f, _ in d.skipped) == ["bad.png", "notes.txt"]
    assert "2 skipped" in d.describe()
    (tmp_path / "good.png").unlink()
    with pytest.raises(DataError, match=r"no readable images in .*2 files skipped"):
        load(tmp_path)


def test_failure_at_decode_time_names_the_file(tmp_path, pictures):
    path = save(pictures["rgb"][0], tmp_path / "a.png")
    d = load(tmp_path)
    path.write_bytes(path.read_bytes()[:100])  # header intact, pixel data cut
    with pytest.raises(DataError, match=r"could not decode image .*a\.png"):
        d.train[0]


def test_image_folders_stream(tmp_path, pictures, monkeypatch):
    for k in range(6):
        save(pictures["rgb"][k % 3], tmp_path / f"{k}.jpg")
    calls = []
    real = images.decode_image
    monkeypatch.setattr(images, "decode_image", lambda path, *a: calls.append(path) or real(path, *a))
    d = load(tmp_path)
    assert calls == []  # the scan read headers only
    src = d.train.source
    assert src.paths == sorted(str(p) for p in tmp_path.glob("*.jpg"))
    assert not any(isinstance(v, np.ndarray) and v.dtype != np.int64 for v in vars(src).values())
    d.train[4]
    d.train[1]
    assert calls == [src.paths[4], src.paths[1]]  # one decode per item accessed
    batch, labels = next(iter(DataLoader(d.train, batch_size=4)))
    assert batch.shape == (4, 3, 24, 32) and labels.tolist() == [-1] * 4
    assert len(calls) == 6


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match=r"no examples found in .*\.png"):
        load(tmp_path)


def test_image_test_path_uses_training_classes(tmp_path, pictures):
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("cat", "dog"):
            for k in range(n):
                save(pictures["rgb"][k], tmp_path / split / cls / f"{k}.png")
    d = load(tmp_path / "train", test_path=str(tmp_path / "test"))
    assert len(d.train) == 6 and len(d.test) == 2
    assert [int(d.test[i][1]) for i in range(2)] == [0, 1]
    save(pictures["rgb"][0], tmp_path / "test" / "bird" / "0.png")
    with pytest.raises(DataError, match=r"class folders \['bird'\].*training classes"):
        load(tmp_path / "train", test_path=str(tmp_path / "test"))


# -- IDX -----------------------------------------------------------------------------


def make_idx(folder: Path, gz: bool, n_train=50, n_test=20):
    rng = np.random.default_rng(1)
    sfx = ".gz" if gz else ""
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 7, 5), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte{sfx}", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte{sfx}", y)
        data[split] = (x, y)
    return data


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_idx_folder_and_file(tmp_path, gz):
    data = make_idx(tmp_path, gz)
    d = load(tmp_path)
    assert d.input_shape == (1, 7, 5) and len(d.train) == 50 and len(d.test) == 20
    assert d.normalization.scale == 255 and d.num_classes == int(data["train"][1].max()) + 1
    np.testing.assert_allclose(all_x(d.test)[:, 0], data["t10k"][0] / 255, atol=1e-7)
    assert d.test.labels.tolist() == data["t10k"][1].tolist()
    images_file = tmp_path / f"train-images-idx3-ubyte{'.gz' if gz else ''}"
    d = load(images_file)  # labels found next to it; no test split from a single file
    assert d.test is None and d.train.labels.tolist() == data["train"][1].tolist()
    assert isinstance(read_idx(images_file), np.memmap) != gz  # raw files are memory-mapped


def test_idx_truncated_and_inconsistent(tmp_path):
    make_idx(tmp_path, gz=False)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated"):
        load(tmp_path)
    g = tmp_path / "gz" / "train-images-idx3-ubyte.gz"
    g.parent.mkdir()
    write_idx(g, np.zeros((4, 3, 3), np.uint8))
    g.write_bytes(g.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz is a truncated or corrupt gzip"):
        load(g)
    write_idx(g, np.zeros((4, 3, 3), np.uint8))
    write_idx(g.parent / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"labels file .* holds shape \(5,\) .* 4 examples"):
        load(g)


def test_idx_found_by_magic_number(tmp_path):
    write_idx(tmp_path / "x.bin", np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5)
    d = load(tmp_path / "x.bin")  # no IDX-like name: the header says IDX
    assert d.input_shape == (1, 3, 4) and d.train.labels.tolist() == [-1, -1]
    assert d.normalization.kind == "standardize"  # int16 values beyond [0, 1]


def test_format_idx_on_a_non_idx_file(tmp_path):
    f = tmp_path / "table.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"table.csv is not an IDX file"):
        load(f, format="idx")


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist():
    dtype, dims = idx_header(FASHION / "train-images-idx3-ubyte.gz")
    assert dtype == np.uint8 and dims == (60000, 28, 28)
    assert idx_header(FASHION / "t10k-labels-idx1-ubyte.gz")[1] == (10000,)
    d = load("fashion-mnist", limit=64)
    assert d.input_shape == (1, 28, 28) and len(d.train) == 64 and len(d.test) == 10000
    assert d.num_classes == 10 and d.classes[9] == "Ankle boot" and d.value_range == (0.0, 1.0)
    x, y = d.test[0]
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and 0 <= int(y) < 10


def test_fashion_mnist_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load("fashion-mnist")


# -- built-in digits -----------------------------------------------------------------


def test_digits():
    d = load("digits")
    assert d.input_shape == (1, 8, 8) and (len(d.train), len(d.test)) == (1438, 359)
    assert d.normalization.kind == "unit" and d.normalization.scale == 16
    assert d.num_classes == 10 and d.value_range == (0.0, 1.0)
    x = all_x(d.train)
    assert x.min() == 0 and x.max() == 1
    again = load("digits", limit=100)  # deterministic split; limit takes a subset of train
    assert np.array_equal(again.test.labels, d.test.labels)
    assert len(again.train) == 100 and "100 train + 359 test" in again.describe()
    assert len(np.unique(again.train.labels)) == 10  # a random subset keeps every class


# -- npy / npz -----------------------------------------------------------------------


def test_npy_is_memory_mapped_and_unit_when_in_0_1(tmp_path):
    x = np.random.default_rng(0).random((40, 3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    d = load(tmp_path / "x.npy", test_fraction=0.25)
    assert isinstance(d.train.source.x, np.memmap)
    assert d.input_shape == (3, 4) and d.normalization.kind == "unit" and d.normalization.scale == 1
    assert (len(d.train), len(d.test)) == (30, 10)
    assert not set(d.train.indices) & set(d.test.indices)
    np.testing.assert_array_equal(all_x(d.test), x[d.test.indices])
    x0 = d.train[0][0]
    x0.fill_(-1)  # items are copies: editing one in place leaves the data alone
    assert float(d.train[0][0].min()) >= 0
    # DataLoader's batched fetch (__getitems__) gives what item access gives
    xb, yb = next(iter(DataLoader(d.train, batch_size=8)))
    np.testing.assert_array_equal(xb.numpy(), all_x(d.train)[:8])
    assert yb.tolist() == [-1] * 8


def test_npy_standardized_on_the_training_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -3.0, 100.0], [2.0, 0.5, 30.0], (200, 3))
    x[:, 1] = 7.0  # a constant feature: std 0 -> 1
    np.save(tmp_path / "x.npy", x)
    d = load(tmp_path / "x.npy", test_fraction=0.2)
    n = d.normalization
    assert n.kind == "standardize" and d.value_range is None and n.shape == [3]
    tr = x[d.train.indices]
    np.testing.assert_allclose(n.mean, tr.mean(0), rtol=1e-6)  # examples are read as float32
    np.testing.assert_allclose(n.std, [tr[:, 0].std(), 1.0, tr[:, 2].std()], rtol=1e-6)
    z = all_x(d.train)
    np.testing.assert_allclose(z.mean(0), [0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(z.std(0), [1, 0, 1], atol=1e-5)


def test_uint8_npy_is_unit_scaled(tmp_path):
    np.save(tmp_path / "x.npy", np.full((5, 2, 2), 200, np.uint8))
    d = load(tmp_path / "x.npy")
    assert d.normalization.scale == 255 and d.value_range == (0.0, 1.0)
    d = load(tmp_path / "x.npy", image_size=[4, 4], channels=3)  # image options: (H, W) -> (1, H, W)
    assert d.input_shape == (3, 4, 4)
    np.testing.assert_allclose(d.train[0][0].numpy(), 200 / 255, atol=1e-6)


def test_npz_arrays_labels_and_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x, xt = rng.random((30, 6)), rng.random((10, 6))
    y, yt = np.array(["b", "a", "c"] * 10), np.array(["c", "a"] * 5)
    np.savez_compressed(tmp_path / "d.npz", data=x, labels=y, x_test=xt, y_test=yt)
    d = load(tmp_path / "d.npz")
    assert d.input_shape == (6,) and d.classes == ["a", "b", "c"] and d.num_classes == 3
    assert d.train.labels[:3].tolist() == [1, 0, 2] and d.test.labels[:2].tolist() == [2, 0]
    np.testing.assert_allclose(all_x(d.test), xt, rtol=1e-6)
    np.savez(tmp_path / "many.npz", a=x, b=x)
    with pytest.raises(DataError, match=r"holds arrays \['a', 'b'\].*x, X, data"):
        load(tmp_path / "many.npz")


def test_nan_and_inf_values_name_the_file_and_row(tmp_path):
    x = np.zeros((10, 4))
    x[7, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match=r"nan.npy: example 7 .* NaN"):
        load(tmp_path / "nan.npy")
    x[7, 2], x[3, 0] = 0, -np.inf
    np.save(tmp_path / "inf.npy", x)
    with pytest.raises(DataError, match=r"inf.npy: example 3 .* infinite"):
        load(tmp_path / "inf.npy")


def test_object_arrays_are_never_unpickled(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj.npy holds Python objects"):
        load(tmp_path / "obj.npy")


# -- CSV -----------------------------------------------------------------------------


def write_csv(path: Path, header: str, rows) -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def test_csv_features_standardized_and_labels_mapped(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(10, 3, (60, 2))
    kinds = ["setosa", "virginica", "versicolor"]
    f = write_csv(tmp_path / "t.csv", "a,species,b",
                  [(a, kinds[i % 3], b) for i, (a, b) in enumerate(feats)])
    d = load(f, label_column="species", test_fraction=0.25)
    assert d.input_shape == (2,) and d.classes == sorted(kinds) and d.num_classes == 3
    assert d.normalization.kind == "standardize" and d.value_range is None
    np.testing.assert_allclose(all_x(d.train).mean(0), 0, atol=1e-5)
    idx = d.test.indices
    assert d.test.labels.tolist() == [sorted(kinds).index(kinds[i % 3]) for i in idx]
    np.testing.assert_allclose(d.normalization.invert(all_x(d.test)), feats[idx], rtol=1e-5)


def test_csv_bad_cells(tmp_path):
    f = write_csv(tmp_path / "t.csv", "a,b,c", [(1, 2, 3), (4, "oops", 6)])
    with pytest.raises(DataError, match=r"t.csv, line 3 \(data row 2\), column 'b' holds 'oops'.*label_column"):
        load(f)
    f = write_csv(tmp_path / "n.csv", "a,b", [(1, 2), (3, 4), (5, "nan")])
    with pytest.raises(DataError, match=r"n.csv, line 4 \(data row 3\), column 'b' holds a NaN"):
        load(f)
    f = write_csv(tmp_path / "h.csv", "a,b", [])
    with pytest.raises(DataError, match=r"no examples found in .*h.csv"):
        load(f)
    with pytest.raises(DataError, match=r"label_column='y' is not in the header .*\['a', 'b'\]"):
        load(f, label_column="y")


def test_csv_time_series_windows(tmp_path):
    t = np.arange(40, dtype=float)
    rows = np.stack([np.sin(t), np.cos(t), t], 1)
    f = write_csv(tmp_path / "s.csv", "x,y,step", rows)
    d = load(f, sequence_length=5, normalize="none", test_fraction=0.25)
    assert d.input_shape == (5, 3)
    # last 10 rows held out; no window crosses the boundary
    assert len(d.train) == 30 - 5 + 1 and len(d.test) == 10 - 5 + 1
    np.testing.assert_allclose(d.train[3][0].numpy(), rows[3:8], rtol=1e-6)
    np.testing.assert_allclose(d.test[0][0].numpy(), rows[30:35], rtol=1e-6)
    d = load(f, sequence_length=5, test_fraction=0.25)
    assert d.normalization.shape == [1, 3]  # per feature, shared across time steps
    np.testing.assert_allclose(d.normalization.mean, rows[:30].mean(0), rtol=1e-6)  # each row once
    np.testing.assert_allclose(d.normalization.std, rows[:30].std(0), rtol=1e-6)


def test_csv_test_path_must_match_columns(tmp_path):
    a = write_csv(tmp_path / "a.csv", "u,v,label", [(1, 2, "x"), (3, 4, "y")])
    b = write_csv(tmp_path / "b.csv", "u,v,label", [(5, 6, "y")])
    c = write_csv(tmp_path / "c.csv", "u,w,label", [(5, 6, "y")])
    d = load(a, test_path=str(b), label_column="label")
    assert d.test.labels.tolist() == [1]
    with pytest.raises(DataError, match=r"feature columns of .*c.csv \(\['u', 'w'\]\) differ"):
        load(a, test_path=str(c), label_column="label")


# -- normalization -------------------------------------------------------------------


@pytest.mark.parametrize("norm", [
    Normalization.unit(255.0),
    Normalization.standardize([1.0, -2.0, 3.0], [0.5, 2.0, 0.0], shape=[3, 1, 1]),
    Normalization.none((0.0, 1.0)),
], ids=["unit", "standardize", "none"])
def test_normalization_round_trip_and_json(norm):
    x = np.random.default_rng(0).uniform(0, 255, (4, 3, 2, 2))
    for arr in (x, x.astype(np.float32), x[0]):
        y = norm.apply(arr)
        assert y.dtype == arr.dtype and y.shape == arr.shape
        np.testing.assert_allclose(norm.invert(y), arr, rtol=1e-5)
    t = torch.from_numpy(x.astype(np.float32))
    torch.testing.assert_close(norm.apply(t), torch.from_numpy(norm.apply(x.astype(np.float32))))
    torch.testing.assert_close(norm.invert(norm.apply(t)), t)
    back = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back == norm
    np.testing.assert_array_equal(back.apply(x), norm.apply(x))


def test_normalization_values_and_bad_dicts():
    assert Normalization.unit(16.0).apply(np.array([8], np.uint8)).tolist() == [0.5]
    s = Normalization.standardize([2.0], [0.0])
    assert s.std == [1.0] and s.apply(np.array([3.0])).tolist() == [1.0]
    with pytest.raises(ValueError, match="kind 'minmax' is not one of unit, standardize, none"):
        Normalization.from_dict({"kind": "minmax"})
    with pytest.raises(ValueError, match=r"unknown normalization keys \['offset'\]"):
        Normalization.from_dict({"kind": "unit", "offset": 1})
    with pytest.raises(ValueError, match=r"mean \(2 values\), std \(3\)"):
        Normalization(kind="standardize", mean=[0, 0], std=[1, 1, 1])


# -- bad input -----------------------------------------------------------------------


def test_missing_path_and_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.path='.*nothing.npy' does not exist"):
        load(tmp_path / "nothing.npy")
    with pytest.raises(FileNotFoundError, match=r"data.test_path="):
        load("digits", test_path=str(tmp_path / "nothing"))
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(DataError, match=r"no examples found in .*empty.npy"):
        load(tmp_path / "empty.npy")


@pytest.mark.parametrize("option, value, message", [
    ("format", "parquet", r"data.format='parquet' is not one of auto, idx, images, npy"),
    ("normalize", "minmax", r"data.normalize='minmax' is not one of"),
    ("channels", 2, r"data.channels must be 1 .* got 2"),
    ("image_size", [0, 4], r"each of data.image_size must be a positive integer"),
    ("test_fraction", 1.0, r"data.test_fraction must be a number in \[0, 1\), got 1.0"),
    ("limit", 0, r"data.limit must be a positive integer"),
    ("resize", "pad", r"data.resize='pad' is not one of resize, crop"),
])
def test_bad_options(option, value, message):
    with pytest.raises(ValueError, match=message):
        load("digits", **{option: value})


def test_unknown_file_type(tmp_path):
    f = tmp_path / "data.parquet"
    f.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"cannot tell the format of .*data.parquet.*data.format"):
        load(f)


def test_shapes_must_match_between_train_and_test(tmp_path):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((5, 3)))
    np.save(tmp_path / "b.npy", np.random.default_rng(0).random((5, 4)))
    with pytest.raises(DataError, match=r"b.npy have shape \(4,\) but training examples .*\(3,\)"):
        load(tmp_path / "a.npy", test_path=str(tmp_path / "b.npy"))


def test_test_fraction_too_large(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((1, 3)))
    with pytest.raises(DataError, match=r"test_fraction=0.5 of the 1 examples .* leaves no training"):
        load(tmp_path / "a.npy", test_fraction=0.5)
