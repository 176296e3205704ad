"""SCALE-Sim topology CSVs as workloads (``ksm-sim --topology``; ``topology:`` in a sweep spec).

Each row is checked against :class:`~hwsim.schemas.topology_row.TopologyRow` (types, ranges, a filter that
fits the ifmap, groups that divide the channels, unique names) before any layer is built; a problem is one
:class:`~hwsim.errors.InputError` line naming the file, the line and the column. The file is streamed row by
row (:func:`hwsim.fileio.bounded.csv_rows`), so memory stays flat whatever it holds.
"""

from __future__ import annotations

from pathlib import Path

from hwsim.errors import InputError
from hwsim.fileio import bounded as safeload
from hwsim.schemas.validation import validate
from hwsim.schemas.topology_row import COLUMNS, GROUPS, TopologyRow
from hwsim.workload.layers import Layer, Workload


def _header(path: Path, cells: list[str]) -> tuple[str, ...]:
    """The columns the header names: SCALE-Sim's eight, in order (any case), then ``Groups`` or nothing.

    A ninth column of another name is refused rather than ignored: a misspelt ``Group`` would otherwise cost
    every grouped layer as dense.
    """
    header = [cell for cell in cells if cell]  # SCALE-Sim's header ends with a comma
    known = (*COLUMNS, GROUPS)
    for i, cell in enumerate(header):
        if i >= len(known) or cell.lower() != known[i].lower():
            expected = repr(known[i]) if i < len(known) else "nothing"
            raise InputError(f"{path}: header column {i + 1}: expected {expected}, got {safeload.short(cell)}")
    if len(header) < len(COLUMNS):
        raise InputError(f"{path}: header column {len(header) + 1}: expected {COLUMNS[len(header)]!r}, "
                         "got nothing")
    return known[:len(header)]


def _layer(row: TopologyRow) -> Layer:
    """The conv layer of a validated row: padding 0 (SCALE-Sim's IFMAP sizes include it)."""
    size_in = (row.ifmap_height, row.ifmap_width)
    kernel = (row.filter_height, row.filter_width)
    size_out = tuple((size_in[i] - kernel[i]) // row.strides + 1 for i in (0, 1))
    return Layer(name=row.name, kind="conv", in_channels=row.channels, out_channels=row.num_filter,
                 kernel_hw=kernel, stride_hw=(row.strides, row.strides), padding_hw=(0, 0),
                 groups=row.layer_groups(), input_hw=size_in, output_hw=size_out)  # type: ignore[arg-type]


def load_topology(path: str | Path) -> Workload:
    """Read a SCALE-Sim topology CSV (its format: ``docs/reference/topology-row.md``).

    The output is ``(H - R) // stride + 1`` (SCALE-Sim's ``ceil((H - R + s) / s)``). An optional ``Groups``
    column gives grouped and depthwise convolutions (AlexNet's groups of 2, a depthwise layer's groups =
    channels); without it, a layer whose name contains ``DP`` is depthwise, as in SCALE-Sim.
    """
    path = Path(path)
    safeload.check_file(path, InputError)
    rows = safeload.csv_rows(path, InputError)  # streamed, capped: memory stays flat
    first = next(rows, None)
    if first is None:
        raise InputError(f"{path}: empty topology file")
    columns = _header(path, first[1])
    layers = []
    names: set[str] = set()
    for line, cells in rows:
        padded = cells + [""] * (len(columns) - len(cells))  # a short row: its missing cells are empty
        extra = next((i for i in range(len(columns), len(cells)) if cells[i]), None)
        if extra is not None:  # refused, not ignored: groups given without a Groups header would be dropped
            raise InputError(f"{path}: line {line}: column {extra + 1}: a value beyond the header's "
                             f"{len(columns)} columns, got {safeload.short(cells[extra])}")
        row = validate(TopologyRow, dict(zip(columns, padded)), f"{path}: line {line}", context={"names": names})
        names.add(row.name)
        layers.append(_layer(row))
    if not layers:
        raise InputError(f"{path}: no layers after the header")
    return Workload(source=path.name, layers=tuple(layers))
