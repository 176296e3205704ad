"""ksm.folder_lock: one writer per run folder; a second ksm-train gets one line, not a half-written run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksm.cli.ksm_train import main
from ksm.folder_lock import Busy, folder_lock


def test_a_second_writer_on_one_run_folder_gets_one_line(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "digits"
    code = ("import sys, time\nfrom ksm.folder_lock import folder_lock\n"
            f"with folder_lock(__import__('pathlib').Path({str(out)!r})):\n"
            "    print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(main, ["--task", "digits", "--out", str(out), "--weights", "none"])
        assert result.exit_code == 1 and "another ksm-train is writing this folder" in result.output
        assert "Traceback" not in result.output and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with folder_lock(out), pytest.raises(Busy), folder_lock(out):
        pass  # a second lock in one process is refused too (flock is per open file)
