"""Hostile input to hwsim's readers (issue 16): bounded, one clean error, never a traceback.

Property-based (hypothesis): whatever a run folder, profile or topology CSV holds, the reader returns
or raises :class:`InputError`; nothing else escapes.
"""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.errors import InputError
from hwsim.workload.layers import load_run, load_topology
from hwsim.hardware.profile import load_profile
from tests.hwsim.conftest import write_run

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
BUNDLED = Path(__file__).parents[2] / "hwsim" / "profiles" / "edge_npu.yaml"


def _clean(call: Any) -> None:
    try:
        call()
    except InputError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000


# --------------------------------------------------------------------------------------------
# Run folders
@FUZZ
@given(key=st.sampled_from(["format", "task", "method", "batchnorm", "layers", "tensors", "metrics", "train",
                            "sequence", "files"]), value=JSON)
def test_run_json_with_any_value_in_any_key(key: str, value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_run(Path(tmp) / "run", run_overrides={key: value})
        _clean(lambda: load_run(folder))


@FUZZ
@given(document=JSON)
def test_run_json_that_is_any_json(document: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_run(Path(tmp) / "run")
        (folder / "run.json").write_text(json.dumps(document))
        _clean(lambda: load_run(folder))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_run_files_that_are_any_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_run(Path(tmp) / "run")
        (folder / "masks.safetensors").write_bytes(raw)
        _clean(lambda: load_run(folder))
        (folder / "run.json").write_bytes(raw)
        _clean(lambda: load_run(folder))


@pytest.mark.parametrize(("text", "message"), [("[" * 5000 + "]" * 5000, "nested deeper"),
                                               ('{"format": ' + "9" * 500 + "}", "digits"),
                                               ('{"format": ' + "9" * 5000 + "}", "digits"),
                                               ('{"method": "ksm", "method": "finetune"}', "duplicate key 'method'")])
def test_run_json_depth_and_integers_are_bounded(tmp_path: Path, text: str, message: str) -> None:
    folder = write_run(tmp_path / "run")
    (folder / "run.json").write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        load_run(folder)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(("metrics", "message"), [({"top1": float("inf")}, "metrics.top1"),
                                                  ({"top1": "high"}, "metrics.top1"),
                                                  ({"top1": 1.5}, "metrics.top1"),
                                                  ({"mask_density": -0.1}, "metrics.mask_density"),
                                                  ({"int8": {"top1": float("nan")}}, "metrics.int8.top1")])
def test_recorded_accuracies_are_fractions(tmp_path: Path, metrics: dict[str, Any], message: str) -> None:
    """An accuracy printed beside the costs must be one: not Infinity, a string or 150 %."""
    folder = write_run(tmp_path / "run", run_overrides={"metrics": metrics})
    with pytest.raises(InputError, match=message) as caught:
        load_run(folder)
    assert "must be a fraction in [0, 1]" in str(caught.value)


def test_a_folder_where_a_profile_file_goes_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").mkdir()
    with pytest.raises(InputError, match=r"p\.yaml: is a folder, not a file"):
        load_profile(str(tmp_path / "p.yaml"))


# --------------------------------------------------------------------------------------------
# Profiles
def _profile(tmp: Path, text: str) -> Path:
    path = tmp / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@FUZZ
@given(key=st.sampled_from(sorted(yaml.safe_load(BUNDLED.read_text()))), value=JSON)
def test_profile_with_any_value_in_any_key(key: str, value: Any) -> None:
    raw = yaml.safe_load(BUNDLED.read_text())
    raw[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        _clean(lambda: load_profile(_profile(Path(tmp), yaml.safe_dump(raw))))


def test_unknown_key_with_a_line_break_is_named_on_one_line(tmp_path: Path) -> None:
    """The example hypothesis found: a key that holds a line break is shown escaped."""
    raw = yaml.safe_load(BUNDLED.read_text())
    raw["array"] = {"\n": None}
    with pytest.raises(InputError) as caught:
        load_profile(_profile(tmp_path, yaml.safe_dump(raw)))
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith("p.yaml.array.\\n: unknown key (known: rows, cols, mac_energy_pj)")


@FUZZ
@given(text=st.text(max_size=300))
def test_profile_that_is_any_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _clean(lambda: load_profile(_profile(Path(tmp), text)))


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    base = BUNDLED.read_text()
    began = time.perf_counter()
    with pytest.raises(InputError, match="aliases") as caught:
        load_profile(_profile(tmp_path, base + "\n" + "\n".join(lines) + "\nbomb: *a11\n"))
    assert time.perf_counter() - began < 2 and len(str(caught.value)) < 300


@pytest.mark.parametrize(("extra", "message"), [("x: " + "[" * 200 + "]" * 200, "deeper"),
                                                ("x: " + "9" * 400, "digits"),
                                                ("name: again", "duplicate key 'name'")])
def test_profile_depth_integers_and_duplicate_keys(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        load_profile(_profile(tmp_path, BUNDLED.read_text() + "\n" + extra + "\n"))
    assert len(str(caught.value)) < 300


def test_precision_bits_are_bounded(tmp_path: Path) -> None:
    text = BUNDLED.read_text().replace("weights: 8", "weights: 4096", 1)
    assert "weights: 4096" in text
    with pytest.raises(InputError, match="precision_bits.weights: 4096 bits, more than the 64"):
        load_profile(_profile(tmp_path, text))


# --------------------------------------------------------------------------------------------
# Topology CSVs
HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


@pytest.mark.parametrize(("rows", "message"), [("c1, 8, 8, 3, 3, 3, 8, 1\nc1, 8, 8, 3, 3, 8, 8, 1\n", "used twice"),
                                               (", 8, 8, 3, 3, 3, 8, 1\n", "line 2: layer name: empty")])
def test_topology_rows_name_their_problem(tmp_path: Path, rows: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(InputError, match=message):
        load_topology(path)


def test_a_spreadsheet_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "c1, 8, 8, 3, 3, 3, 8, 1\n").encode())
    assert [layer.name for layer in load_topology(path).layers] == ["c1"]


@FUZZ
@given(text=st.text(max_size=400))
def test_topology_that_is_any_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(text.encode("utf-8", "replace"))
        _clean(lambda: load_topology(path))
        path.write_bytes(HEADER.encode() + text.encode("utf-8", "replace"))
        _clean(lambda: load_topology(path))


@pytest.mark.parametrize(("row", "message"), [("c1, 9" + "9" * 400 + ", 8, 3, 3, 3, 8, 1", "must be in 1.."),
                                              ("c1, " + "9" * 5000 + ", 8, 3, 3, 3, 8, 1", "must be integers"),
                                              ("c1, 8, 8, 3, 3, 3, 8, 0", "must be in 1..")])
def test_topology_sizes_are_bounded(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(HEADER + row + ",\n")
    with pytest.raises(InputError, match=message) as caught:
        load_topology(path)
    assert len(str(caught.value)) < 300


def test_a_million_row_topology_keeps_memory_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    row = "conv, 224, 224, 3, 3, 3, 64, 1,\n"
    with path.open("w") as handle:
        handle.write(HEADER)
        for _ in range(10):
            handle.write(row * 100_000)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="more than"):
            load_topology(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
