"""Where ``ksm-train`` puts a run: the names of run folders and sequence folders under ``--runs-dir``.

A name tells the runs of one task apart by method and by the options that change what is learned, so
several methods and ablations train side by side into one runs dir without taking each other's folders.
"""

from __future__ import annotations

from hwsim import catalogue


def run_folder_name(task: str, method: str, batchnorm: str | None, soft: bool, tag: str = "") -> str:
    """``<task>`` for the catalogue's subject (KSM) with its defaults, ``<task>-<method>[-<tag>][-bn<policy>]
    [-binary]`` otherwise (``tag``: :func:`hwsim.catalogue.option_tag`, e.g. ``r4`` for LoRA at rank 4;
    ``-binary``: a method with a soft part trained without it)."""
    traits = catalogue.get(method)
    name = task if traits.subject else f"{task}-{method}"
    if tag:
        name += f"-{tag}"
    if batchnorm is not None:
        name += f"-bn{batchnorm}"
    if traits.soft_part and not soft:
        name += "-binary"
    return name


def sequence_folder_name(method: str, batchnorm: str | None) -> str:
    """``<method>[-bn<policy>]``: the one folder a sequence method (PackNet, CPG) learns its tasks into."""
    return method + (f"-bn{batchnorm}" if batchnorm else "")
