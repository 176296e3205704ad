"""SCALE-Sim topology CSVs (``ksm-sim --topology``): every row through the ``TopologyRow`` schema, errors naming
the file, the line and the column; hostile files bounded, one clean error, never a traceback."""

from __future__ import annotations

import json
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.errors import InputError
from hwsim.fileio.bounded import MAX_SIZE
from hwsim.ksm_sim import main
from hwsim.schemas.reference import FORMATS, render
from hwsim.workload.topology import load_topology

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
GROUPED = HEADER.replace("Strides,", "Strides, Groups,")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _clean(call: Any) -> None:
    try:
        call()
    except InputError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# What a row is costed as


def test_topology_csv(tmp_path: Path) -> None:
    csv = tmp_path / "layers.csv"
    csv.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                   "Strides,\nsmall_3x3, 18, 18, 3, 3, 16, 32, 1,\nDP_conv, 18, 18, 3, 3, 16, 16, 1,\n")
    out = tmp_path / "t.json"
    r = invoke("--topology", str(csv), "--profile", "zigzag_tpu_like", "--json", str(out))
    assert r.exit_code == 0, r.output
    layers = json.loads(out.read_text())["results"][0]["layers"]
    assert [x["macs"] for x in layers] == [16 * 16 * 16 * 32 * 9, 16 * 16 * 16 * 9]


ALEXNET_CSV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides, Groups,
conv1, 227, 227, 11, 11, 3, 96, 4, 1,
conv2, 31, 31, 5, 5, 96, 256, 1, 2,
dw, 15, 15, 3, 3, 64, 64, 1, 64,
"""


def test_topology_groups_column(tmp_path: Path) -> None:
    path = tmp_path / "alex.csv"
    path.write_text(ALEXNET_CSV)
    out = tmp_path / "r.json"
    r = invoke("--topology", str(path), "--json", str(out))
    assert r.exit_code == 0, r.output
    layers = json.loads(out.read_text())["results"][0]["layers"]
    # grouped CONV2: 256 * 96/2 * 25 * 27 * 27 MACs (not the 1.62x-larger ungrouped count)
    assert layers[1]["macs"] == 256 * 48 * 25 * 27 * 27
    assert layers[2]["macs"] == 64 * 9 * 13 * 13  # depthwise without naming tricks


def test_topology_groups_must_divide_channels(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(ALEXNET_CSV.replace("conv2, 31, 31, 5, 5, 96, 256, 1, 2,", "conv2, 31, 31, 5, 5, 96, 256, 1, 5,"))
    r = invoke("--topology", str(path))
    assert r.exit_code != 0
    assert "bad.csv: line 3: Groups: 5 does not divide Channels 96 and Num Filter 256" in r.output
    assert len(r.output.strip().splitlines()) == 1


@FUZZ
@given(ih=st.integers(1, 64), iw=st.integers(1, 64), fh=st.integers(1, 64), fw=st.integers(1, 64),
       st_=st.integers(1, 8), cg=st.integers(1, 4), fg=st.integers(1, 4), groups=st.integers(1, 4))
def test_a_valid_row_is_the_layer_scale_sim_costs(ih: int, iw: int, fh: int, fw: int, st_: int, cg: int, fg: int,
                                                   groups: int) -> None:
    """Every row the schema accepts builds its layer: output (H - R) // s + 1, no padding, the row's groups."""
    fh, fw = min(fh, ih), min(fw, iw)
    with tempfile.TemporaryDirectory() as tmp:
        path = _csv(Path(tmp), GROUPED + f"c, {ih}, {iw}, {fh}, {fw}, {cg * groups}, {fg * groups}, {st_}, {groups},\n")
        (layer,) = load_topology(path).layers
    assert layer.output_hw == ((ih - fh) // st_ + 1, (iw - fw) // st_ + 1)
    assert (layer.padding_hw, layer.groups, layer.in_channels, layer.out_channels) == ((0, 0), groups, cg * groups,
                                                                                        fg * groups)


def test_sizes_written_as_whole_floats_are_the_integers(tmp_path: Path) -> None:
    (layer,) = load_topology(_csv(tmp_path, HEADER + "c1, 8.0, 8, 3, 3, 3, 8, 1e0,\n")).layers
    assert layer.input_hw == (8, 8) and layer.stride_hw == (1, 1)


def test_an_empty_groups_cell_keeps_scale_sims_depthwise_rule(tmp_path: Path) -> None:
    layers = load_topology(_csv(tmp_path, GROUPED + "DP1, 8, 8, 3, 3, 6, 6, 1,\nc2, 8, 8, 3, 3, 6, 6, 1,\n")).layers
    assert [layer.groups for layer in layers] == [6, 1]


def test_a_spreadsheet_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "c1, 8, 8, 3, 3, 3, 8, 1\n").encode())
    assert [layer.name for layer in load_topology(path).layers] == ["c1"]


# --------------------------------------------------------------------------------------------
# Errors: the file, the line, the column


@pytest.mark.parametrize(("text", "message"), [
    (HEADER + "c1, 8, 8, 3, 3, 3, 8, 1\nc1, 8, 8, 3, 3, 8, 8, 1\n", "line 3: Layer name: is used twice"),
    (HEADER + ", 8, 8, 3, 3, 3, 8, 1\n", "line 2: Layer name: empty"),
    (HEADER + "c1, 8, 8, 9, 3, 3, 8, 1\n", "line 2: Filter Height: 9 is larger than IFMAP Height 8"),
    (HEADER + "c1, 8, 4, 3, 5, 3, 8, 1\n", "line 2: Filter Width: 5 is larger than IFMAP Width 4"),
    (HEADER + "c1, 8, 8, 3, 3, 3, 8\n", "line 2: Strides: empty"),
    (HEADER + "c1, 8, 8, 3, 3, 3, , 1\n", "line 2: Num Filter: empty"),
    (HEADER + "c1, 8.5, 8, 3, 3, 3, 8, 1\n", "line 2: IFMAP Height: .*valid integer, got 8.5"),
    (HEADER + "c1, 8, x, 3, 3, 3, 8, 1\n", "line 2: IFMAP Width: .*valid integer, got 'x'"),
    (HEADER + "c1, 8, 8, 3, 3, nan, 8, 1\n", "line 2: Channels: .*valid integer"),
    (HEADER + "c1, 8, 8, 3, 3, true, 8, 1\n", "line 2: Channels: .*valid integer"),
    (HEADER + "c1, 8, 8, 3, 3, 3, 8, 0\n", "line 2: Strides: must be at least 1"),
    (HEADER + "c1, 8, 8, 3, 3, 3, -8, 1\n", "line 2: Num Filter: must be at least 1"),
    (HEADER + f"c1, 8, 8, 3, 3, {MAX_SIZE + 1}, 8, 1\n", "line 2: Channels: must be at most"),
    (HEADER + "c1, 8, 8, 3, 3, 3, 8, 1, 4\n", "line 2: column 9: a value beyond the header's 8 columns"),
    (GROUPED + "c1, 8, 8, 3, 3, 6, 8, 1, 0\n", "line 2: Groups: must be at least 1"),
    (GROUPED + f"c1, 8, 8, 3, 3, 6, 8, 1, {MAX_SIZE + 1}\n", "line 2: Groups: must be at most"),
    (GROUPED + "c1, 8, 8, 3, 3, 6, 8, 1, 4\n", "line 2: Groups: 4 does not divide Channels 6 and Num Filter 8"),
    (GROUPED + "c1, 8, 8, 3, 3, 6, 8, 1, two\n", "line 2: Groups: .*valid integer"),
    (HEADER + "c" * 300 + ", 8, 8, 3, 3, 3, 8, 1\n", "line 2: Layer name: .*at most 256"),
    (HEADER.replace("Strides,", "Strides, Group,") + "c1, 8, 8, 3, 3, 3, 8, 1\n",
     "header column 9: expected 'Groups', got 'Group'"),
    (HEADER.replace(" Channels,", "") + "c1, 8, 8, 3, 3, 8, 1\n", "header column 6: expected 'Channels'"),
    ("a,b\n1,2\n", "header column 1: expected 'Layer name'"),
    (HEADER, "no layers after the header"),
    ("", "empty topology file"),
])
def test_topology_rows_name_their_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(InputError, match=message) as caught:
        load_topology(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_a_bad_row_through_the_command_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = _csv(tmp_path, HEADER + "c1, 8, 8, 3, 3, 3, 8, 1\nc2, 8, 8, 3, 3, 3, 8, 1e400\n")
    out = tmp_path / "out.json"
    r = invoke("--topology", str(path), "--json", str(out))
    assert r.exit_code != 0 and "t.csv: line 3: Strides:" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


def test_the_schema_documents_the_columns_and_rules() -> None:
    (fmt,) = [f for f in FORMATS if f.slug == "topology-row"]
    page = render(fmt)
    for column in ("`Layer name`", "`IFMAP Height`", "`Num Filter`", "`Strides`", "`Groups`"):
        assert column in page
    assert "`Groups` divides `Channels` and `Num Filter`." in page and f"≤ {MAX_SIZE}" in page


# --------------------------------------------------------------------------------------------
# Hostile files: bounded, one clean error


@FUZZ
@given(text=st.text(max_size=400))
def test_topology_that_is_any_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(text.encode("utf-8", "replace"))
        _clean(lambda: load_topology(path))
        path.write_bytes(HEADER.encode() + text.encode("utf-8", "replace"))
        _clean(lambda: load_topology(path))


@pytest.mark.parametrize(("row", "message"), [("c1, 9" + "9" * 20 + ", 8, 3, 3, 3, 8, 1", "must be at most"),
                                              ("c1, 9" + "9" * 400 + ", 8, 3, 3, 3, 8, 1", "of 401 digits"),
                                              ("c1, " + "9" * 5000 + ", 8, 3, 3, 3, 8, 1", "of 5000 digits"),
                                              ("c1, 8, 8, 3, 3, 3, 8, 1e400", "valid integer, got inf"),
                                              ("c1, 8, 8, 3, 3, 3, 8, 0", "must be at least 1")])
def test_topology_sizes_are_bounded(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + row + ",\n")
    with pytest.raises(InputError, match=message) as caught:
        load_topology(path)
    assert len(str(caught.value)) < 300


def test_a_million_row_topology_keeps_memory_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as handle:
        handle.write(HEADER)
        for chunk in range(10):  # unique names: a repeated one would stop the reader before the row cap
            handle.write("".join(f"conv{chunk}_{i}, 224, 224, 3, 3, 3, 64, 1,\n" for i in range(100_000)))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="more than"):
            load_topology(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
