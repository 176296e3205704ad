"""hwsim.fileio.atomic: a writer never follows or replaces what is not a regular file, and leaves the
umask's mode."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from hwsim.fileio.atomic import (
    UnsafeTarget,
    atomic_write,
    atomic_write_with,
    new_temp_folder,
    replace_folder,
    write_synced,
)


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo"])
def test_writers_never_follow_or_replace_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    target = tmp_path / "out.json"
    {"symlink": lambda: target.symlink_to(victim), "folder": target.mkdir, "fifo": lambda: os.mkfifo(target)}[kind]()
    with pytest.raises(UnsafeTarget, match="not replaced"):
        atomic_write(target, "new")
    with pytest.raises(UnsafeTarget, match="not replaced"):
        atomic_write_with(target, lambda tmp: tmp.write_text("new"))
    assert victim.read_text() == "keep" and os.path.lexists(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.txt"]  # no temporary left


def test_written_files_have_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        folder = new_temp_folder(tmp_path / "folder")
        write_synced(folder / "c", lambda path: path.write_text("x"))
        replace_folder(folder, tmp_path / "folder")
        for path in (atomic_write(tmp_path / "a", "x"), tmp_path / "folder" / "c"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "folder"]  # no temporary left
    finally:
        os.umask(old)


def test_a_writer_that_recreates_the_file_still_gets_the_umask_mode(tmp_path: Path) -> None:
    """safetensors' writer replaces the file it is given with one of mode 0600; what lands follows the umask."""
    from safetensors.numpy import save_file

    old = os.umask(0o022)
    try:
        target = tmp_path / "t.safetensors"
        atomic_write_with(target, lambda tmp: save_file({"x": np.zeros(2, dtype=np.float32)}, str(tmp)))
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_a_failed_write_names_the_target_not_the_temporary(tmp_path: Path) -> None:
    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # what a full disk raises, with no file name

    with pytest.raises(OSError) as info:
        atomic_write_with(tmp_path / "out.json", full)
    assert info.value.filename == str(tmp_path / "out.json") and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no temporary left


def test_a_file_written_into_a_temporary_folder_gets_the_umask_mode(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    old = os.umask(0o027)
    try:
        folder = new_temp_folder(tmp_path / "run")
        write_synced(folder / "masks.safetensors", lambda p: save_file({"x": np.zeros(1, dtype=np.uint8)}, str(p)))
        replace_folder(folder, tmp_path / "run")
        assert stat.S_IMODE((tmp_path / "run" / "masks.safetensors").stat().st_mode) == 0o640
    finally:
        os.umask(old)
