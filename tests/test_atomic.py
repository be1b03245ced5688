"""Files written through aetk/atomic.py follow the umask (issue 19 item 10), including those
whose writer replaces the temporary it is given (safetensors renames its own 0600 file)."""

import os
import stat

import pytest
import torch

from aetk.atomic import atomic_path, atomic_write_text, stray_temporaries
from aetk.train.checkpoint import atomic_save_tensors


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_text_and_safetensors_files_follow_the_umask(tmp_path, umask):
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_save_tensors(tmp_path / "w.safetensors", {"x": torch.ones(3)})
    expected = 0o666 & ~umask
    assert _mode(tmp_path / "a.json") == expected
    assert _mode(tmp_path / "w.safetensors") == expected
    assert stray_temporaries(tmp_path) == []


def test_a_writer_that_replaces_its_temporary_still_gets_the_umask_mode(tmp_path, umask):
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        other = tmp_path / "elsewhere"
        fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"data")
        os.close(fd)
        os.replace(other, tmp)
    assert target.read_bytes() == b"data"
    assert _mode(target) == 0o666 & ~umask


def test_a_full_disk_while_saving_tensors_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    """safetensors reports ENOSPC as its own SafetensorError: it must reach the CLI as the disk's
    error (exit 4, one line naming the file), not as a bug (exit 70 with a traceback)."""
    import errno

    from safetensors import SafetensorError

    from aetk.errors import EXIT_OS, exit_code_for, one_line
    from aetk.train import checkpoint

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    target = tmp_path / "model.safetensors"
    with pytest.raises(OSError) as caught:
        atomic_save_tensors(target, {"x": torch.ones(3)})
    assert caught.value.errno == errno.ENOSPC and exit_code_for(caught.value) == EXIT_OS
    assert one_line(caught.value) == f"{target}: No space left on device"
    assert not target.exists() and stray_temporaries(tmp_path) == []

    def other_failure(tensors, filename, metadata=None):
        raise SafetensorError("some other failure")

    monkeypatch.setattr(checkpoint, "save_file", other_failure)
    with pytest.raises(SafetensorError):  # not the disk's: left as it is
        atomic_save_tensors(target, {"x": torch.ones(3)})


def test_a_full_disk_inside_an_atomic_write_names_the_file(tmp_path):
    """f.write() reports ENOSPC without a file name: atomic_open adds the target's, and leaves
    nothing behind."""
    import errno

    from aetk.atomic import atomic_open
    from aetk.errors import one_line

    target = tmp_path / "train.npy"
    with pytest.raises(OSError) as caught:
        with atomic_open(target, "wb") as f:
            f.write(b"x")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert caught.value.errno == errno.ENOSPC
    assert one_line(caught.value) == f"{target}: No space left on device"
    assert not target.exists() and stray_temporaries(tmp_path) == []
    with pytest.raises(FileNotFoundError) as other:  # errors that name their own file keep it
        with atomic_open(target, "wb"):
            open(tmp_path / "missing", "rb")
    assert other.value.filename == str(tmp_path / "missing")


def test_target_name_inverts_the_temporary_naming_and_removal_keeps_other_files(tmp_path):
    from aetk.atomic import remove_stray_temporaries, target_name

    with atomic_path(tmp_path / "model.v2.safetensors") as tmp:
        assert target_name(tmp) == "model.v2.safetensors"
        mine = tmp.read_bytes()
        (tmp_path / ".other.json.x1y2.tmp").write_text("{}")  # another writer's leftover
        (tmp_path / "keep.tmp").write_text("not hidden: not ours")
        removed = remove_stray_temporaries(tmp_path, of=lambda n: n == "other.json")
        assert [p.name for p in removed] == [".other.json.x1y2.tmp"] and tmp.exists() and mine == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp", "model.v2.safetensors"]
    assert remove_stray_temporaries(tmp_path / "missing") == []


def test_unsynced_write_and_staging_folder(tmp_path):
    from aetk.atomic import atomic_write_bytes, publish, staging_folder

    atomic_write_bytes(tmp_path / "a.png", b"png", sync=False)
    assert (tmp_path / "a.png").read_bytes() == b"png" and stray_temporaries(tmp_path) == []
    with staging_folder(tmp_path, "aetk-export") as stage:
        assert stage.parent == tmp_path and stage.name.startswith(".aetk-export-") and stage.name.endswith(".tmp")
        (stage / "g.onnx").write_bytes(b"onnx")
        (stage / "left.onnx").write_bytes(b"never published")
        publish(stage / "g.onnx", tmp_path / "g.onnx")
    assert (tmp_path / "g.onnx").read_bytes() == b"onnx" and not stage.exists()
    with pytest.raises(RuntimeError):
        with staging_folder(tmp_path, "aetk-export") as stage:
            raise RuntimeError("export failed")
    assert not stage.exists()
