"""docs/api.md runs as written: every ```python block, in order, each in its own interpreter, all in one
empty folder (issue 25). A block that raises, or prints nothing, fails with its output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_an_example_for_each_job() -> None:
    titles = re.findall(r"^## (.+)$", PAGE.read_text(encoding="utf-8"), flags=re.M)
    assert [t.split()[0] for t in titles] == ["Train", "Cost", "Sweep", "Pack", "Load"]
    assert len(BLOCKS) == len(titles)
    assert all(len(block.strip().splitlines()) <= 20 for block in BLOCKS)  # a dozen lines each, give or take


def test_every_example_runs_in_order(tmp_path: Path) -> None:
    for i, block in enumerate(BLOCKS):
        script = tmp_path / f"example_{i}.py"
        script.write_text(block, encoding="utf-8")
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
        assert done.returncode == 0, f"docs/api.md block {i + 1} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), f"docs/api.md block {i + 1} printed nothing"
