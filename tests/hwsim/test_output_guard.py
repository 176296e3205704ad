"""The output guard (hwsim.fileio.output_guard): no output aliases an input, a folder this project did not make is
never written into, folders are published whole, temporaries of dead processes are swept."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.fileio.atomic import atomic_write, sweep_stale
from hwsim.fileio.output_guard import (MARKER, OutputRefused, build_folder, check_no_alias, check_output_folder,
                                       is_marked, read_marker)

NAMES = st.sampled_from(["a", "b", "c"])
TREE_PATHS = st.lists(NAMES, min_size=1, max_size=3).map(lambda parts: "/".join(parts))


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path (what 'nothing touched' compares)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=st.lists(TREE_PATHS, min_size=1, max_size=4), output=TREE_PATHS, via_link=st.booleans())
def test_an_output_on_or_inside_or_around_an_input_is_refused(tmp_path_factory: pytest.TempPathFactory,
                                                               inputs: list[str], output: str,
                                                               via_link: bool) -> None:
    """For random trees: an output equal to, inside or holding an input is refused (through a symbolic link
    too), any other is accepted, and no input's bytes change."""
    root = tmp_path_factory.mktemp("tree")
    for rel in inputs:
        path = root / rel
        if not any(p.is_file() for p in [path, *path.parents]) and not path.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel)
    ins = [root / rel for rel in inputs if (root / rel).exists()]
    before = _digest(root)
    (root.parent / f"{root.name}-link").symlink_to(root)
    out = (root.parent / f"{root.name}-link" if via_link else root) / output
    clash = any(out.resolve() == i or i in out.resolve().parents or out.resolve() in i.parents for i in ins)
    if clash:
        with pytest.raises(OutputRefused, match="input"):
            check_no_alias([out], ins)
    else:
        check_no_alias([out], ins)
    assert _digest(root) == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.sampled_from(["README.md", "a.png", "notes.txt", "sub/x.md"]), st.binary(max_size=20),
                             min_size=1))
def test_an_unmarked_folder_that_is_not_empty_is_never_modified(tmp_path_factory: pytest.TempPathFactory,
                                                               files: dict[str, bytes]) -> None:
    out = tmp_path_factory.mktemp("mine") / "out"
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    before = _digest(out)
    with pytest.raises(OutputRefused, match="not written by this project"):
        with build_folder(out, "test") as tmp:
            (tmp / "README.md").write_text("replaced")
    assert _digest(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_a_new_folder_is_published_whole_and_marked(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    with build_folder(out, "tool-a") as tmp:
        (tmp / "README.md").write_text("r")
        (tmp / "one.png").write_text("1")
        assert not out.exists()  # nothing at the target until the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    assert read_marker(out) == {"README.md": "tool-a", "one.png": "tool-a"}
    marker = json.loads((out / MARKER).read_text())
    assert marker["format"] == "ksm-output/1" and marker["version"]


def test_a_marked_folder_keeps_other_files_and_drops_the_tools_stale_outputs(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    with build_folder(out, "tool-a") as tmp:
        (tmp / "README.md").write_text("r1")
        (tmp / "old.png").write_text("old")
        (tmp / "problems").mkdir()
        (tmp / "problems" / "p.yaml").write_text("p1")
    with build_folder(out, "tool-b") as tmp:
        (tmp / "other.csv").write_text("b")
    (out / "mine.txt").write_text("the user's")
    with build_folder(out, "tool-a") as tmp:
        (tmp / "README.md").write_text("r2")
        (tmp / "problems").mkdir()
        (tmp / "problems" / "q.yaml").write_text("q")
    assert (out / "README.md").read_text() == "r2" and not (out / "old.png").exists()
    assert sorted(p.name for p in (out / "problems").iterdir()) == ["q.yaml"]
    assert (out / "mine.txt").read_text() == "the user's" and (out / "other.csv").read_text() == "b"
    assert read_marker(out) == {"README.md": "tool-a", "other.csv": "tool-b", "problems": "tool-a"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_build_leaves_the_folder_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    with build_folder(out, "tool-a") as tmp:
        (tmp / "README.md").write_text("r1")
    with pytest.raises(OSError, match="disk full"):
        with build_folder(out, "tool-a") as tmp:
            (tmp / "a.png").write_text("half")
            raise OSError(28, "disk full")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "README.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_a_file_or_link_where_a_folder_goes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path)
    for path in (tmp_path / "f", tmp_path / "link"):
        with pytest.raises(OutputRefused, match="not a folder"):
            check_output_folder(path)
    check_output_folder(tmp_path / "new")
    assert not is_marked(tmp_path)


def test_stale_temporaries_of_dead_processes_are_swept_by_the_next_write(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale_file = tmp_path / f".out.json.{pid}.0badcafe.tmp"
    stale_file.write_text("half")
    stale_folder = tmp_path / f".rep.{pid}.deadbeef.tmp"
    stale_folder.mkdir()
    live = tmp_path / f".out.json.{os.getppid()}.0badcafe.tmp"  # a live process's: kept
    live.write_text("busy")
    pending = tmp_path / ".out.json.3.tmp"  # not a temporary's name (a sequence's pending file): kept
    pending.write_text("p")
    atomic_write(tmp_path / "out.json", "{}")
    assert not stale_file.exists() and live.exists() and pending.exists()
    assert sweep_stale(tmp_path / "rep") == [stale_folder] and not stale_folder.exists()


def test_sigterm_removes_the_temporary_folder(tmp_path: Path) -> None:
    """A command killed with SIGTERM while building its folder leaves neither the folder nor a temporary."""
    code = ("import sys, time\n"
            "from hwsim.fileio.output_guard import build_folder, raise_on_sigterm\n"
            "raise_on_sigterm()\n"
            f"with build_folder({str(tmp_path / 'rep')!r}, 't') as tmp:\n"
            "    (tmp / 'a.png').write_text('x'); print('ready', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
