"""Every command the package installs answers ``--version`` (issue 25), with or without torch installed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner


def _console_scripts() -> list[tuple[str, str]]:
    from importlib.metadata import distribution

    return sorted((ep.name, ep.value) for ep in distribution("ksm").entry_points if ep.group == "console_scripts")


@pytest.mark.parametrize("name, target", _console_scripts())
def test_every_cli_says_its_version(name: str, target: str) -> None:
    """Every command the package installs (pyproject's [project.scripts]) answers --version, torch or not."""
    from importlib import import_module
    from importlib.metadata import version

    module, attr = target.split(":")
    if module.startswith("ksm."):
        pytest.importorskip("torch")
    result = CliRunner().invoke(getattr(import_module(module), attr), ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"{name}, version {version('ksm')}"
