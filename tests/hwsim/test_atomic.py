"""hwsim.fileio.atomic: a writer never follows or replaces what is not a regular file, and leaves the
umask's mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
