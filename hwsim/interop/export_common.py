"""What the ZigZag and Timeloop writers share: operand names, file names that are safe, YAML with a header."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ZIGZAG_OPERAND = {"weights": "I2", "inputs": "I1", "outputs": "O"}
TIMELOOP_SPACE = {"weights": "Weights", "inputs": "Inputs", "outputs": "Outputs"}
SPATIAL = {"weight_stationary": ("C", "K"), "output_stationary": ("OX", "K"), "row_stationary": ("FY", "OY")}
TIMELOOP_SPATIAL = {"weight_stationary": ("C", "M"), "output_stationary": ("P", "M"), "row_stationary": ("R", "Q")}
FORMATS = ("zigzag", "timeloop")
TIMELOOP_DIMS = ("G", "C", "M", "R", "S", "N", "P", "Q")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _dump(path: Path, data: Any, header: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)
    path.write_text(header + text, encoding="utf-8")
    return path


class ExportWarning(UserWarning):
    """Something of the design point the tool's files leave out (shown as one ``warning:`` line by the CLIs)."""


def masks_left_out(tool: str) -> str:
    """What an export of a run with masks does not carry: the tools cost the backbone alone."""
    return (f"masks are not exported to {tool}: its files cost the backbone alone, without the mask bits that "
            "travel with the weights and the mask operations ksm-sim adds")

