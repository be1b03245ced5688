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
