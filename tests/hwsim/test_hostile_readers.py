"""Hostile input to hwsim's readers (issue 16): bounded, one clean error, never a traceback.

Property-based (hypothesis): whatever a run folder or profile holds (topology CSVs: test_topology.py), the reader returns
or raises :class:`InputError`; nothing else escapes.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.errors import InputError
from hwsim.fileio.bounded import parse_yaml
from hwsim.hardware.profile import load_profile
from hwsim.workload.layers import load_run
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
                            "sequence", "files", "backbone", "dataset", "lora", "cpg", "method_options"]), value=JSON)
def test_run_json_with_any_value_in_any_key(key: str, value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_run(Path(tmp) / "run", run_overrides={key: value})
        _clean(lambda: load_run(folder))


@FUZZ
@given(where=st.sampled_from([("layers", 0, "kernel"), ("layers", 1, "groups"), ("layers", 2, "output_hw"),
                              ("metrics", "int8"), ("metrics", "soft_precision"), ("metrics", "history"),
                              ("dataset", "input_size"), ("dataset", "num_classes"), ("backbone", "sha256"),
                              ("train", "mask_threshold"), ("train", "soft"), ("tensors", "conv1.mask")]),
       value=JSON)
def test_run_json_with_any_value_in_a_nested_key(where: tuple[Any, ...], value: Any) -> None:
    """The schema's checks reach inside the records (a layer, metrics, the dataset): still one clean line."""
    from tests.hwsim.conftest import LAYERS

    run = {"layers": json.loads(json.dumps(LAYERS)), "metrics": {"top1": 0.5}, "dataset": {"name": "toy"},
           "backbone": {"arch": "toy"}, "train": {}, "tensors": {}}
    *parents, last = where
    node = run
    for part in parents:
        node = node[part]
    node[last] = value
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_run(Path(tmp) / "run", run_overrides={k: v for k, v in run.items() if k != "tensors"})
        if where[0] == "tensors":
            record = json.loads((folder / "run.json").read_text())
            record["tensors"]["conv1.mask"] = value
            (folder / "run.json").write_text(json.dumps(record))
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
@given(key=st.sampled_from(sorted(parse_yaml(BUNDLED.read_text(), "profile", ValueError))), value=JSON)
def test_profile_with_any_value_in_any_key(key: str, value: Any) -> None:
    raw = parse_yaml(BUNDLED.read_text(), "profile", ValueError)
    raw[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        _clean(lambda: load_profile(_profile(Path(tmp), yaml.safe_dump(raw))))


def test_unknown_key_with_a_line_break_is_named_on_one_line(tmp_path: Path) -> None:
    """The example hypothesis found: a key that holds a line break is shown escaped."""
    raw = parse_yaml(BUNDLED.read_text(), "profile", ValueError)
    raw["array"]["\n"] = None
    with pytest.raises(InputError) as caught:
        load_profile(_profile(tmp_path, yaml.safe_dump(raw)))
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith("p.yaml: array.\\n: unknown key")


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
    with pytest.raises(InputError, match="precision_bits.weights: must be at most 64, got 4096"):
        load_profile(_profile(tmp_path, text))


# --------------------------------------------------------------------------------------------
# Packed task files (ksm-export --pack): any header value, any bytes, any tensor cut or added
PACKED_KEYS = ("format", "method", "task", "scale_bits", "soft", "top1", "precisions", "layers", "masked",
               "batchnorms", "head", "num_classes", "quant_scales", "sequence", "scaling", "input_size")


def _packed(tmp: Path, header: dict[str, Any], arrays: dict[str, Any]) -> Path:
    from safetensors.numpy import save_file

    from hwsim.schemas.task_header import encode_header

    path = tmp / "t.ksmtask"
    save_file(arrays, str(path), metadata=encode_header(header))
    return path


def _load_packed_cleanly(path: Path) -> None:
    from hwsim.workload.packed import load_packed

    try:
        load_packed(path)
    except InputError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000 and str(exc).startswith(f"{path}: "), str(exc)


@FUZZ
@given(key=st.sampled_from(PACKED_KEYS), value=JSON)
def test_packed_header_with_any_value_in_any_key(key: str, value: Any) -> None:
    from tests.hwsim.test_packed import ksm_task

    (header, arrays), _ = ksm_task(4)
    header[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        _load_packed_cleanly(_packed(Path(tmp), header, arrays))


@FUZZ
@given(name=st.sampled_from(["mask.binary", "mask.scale", "batchnorm.scale", "head.weight", "head.bias", "new"]),
       size=st.integers(0, 64), dtype=st.sampled_from(["uint8", "int8", "float16", "float32", "int64"]))
def test_packed_tensor_of_any_size_and_type(name: str, size: int, dtype: str) -> None:
    """A tensor swapped for another of any length and type is priced only if it is the one the header implies."""
    import numpy as np

    from hwsim.workload.packed import load_packed
    from tests.hwsim.test_packed import ksm_task

    (header, arrays), _ = ksm_task(4)
    original = arrays.get(name)
    arrays[name] = np.zeros(size, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = _packed(Path(tmp), header, arrays)
        if original is not None and original.shape == (size,) and original.dtype == np.dtype(dtype):
            # same shape and type, other content: priced, unless the content disagrees with another tensor
            # (zeroed binary bits imply a longer mask.scale), which is then the one named
            try:
                assert load_packed(path).method == "ksm"
            except InputError as exc:
                assert re.match(rf"^{re.escape(str(path))}: tensor mask\.scale: ", str(exc)), exc
        else:
            with pytest.raises(InputError, match=f"^{re.escape(str(path))}: tensor '?{re.escape(name)}'?: "):
                load_packed(path)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_packed_file_that_is_any_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.ksmtask"
        path.write_bytes(raw)
        _load_packed_cleanly(path)


# --------------------------------------------------------------------------------------------
# Sweep specs (ksm-explore): whatever a spec holds, load_spec returns or raises one InputError line
def _spec_keys() -> list[str]:
    from hwsim.schemas.explore_spec import ExploreSpec

    return sorted(f.alias or n for n, f in ExploreSpec.model_fields.items())


def _load_spec_cleanly(path: Path) -> None:
    from hwsim.explore.spec import load_spec

    _clean(lambda: load_spec(path, max_points=2_000))


@FUZZ
@given(key=st.sampled_from([*_spec_keys(), "bogus"]), value=JSON)
def test_spec_with_any_value_in_any_key(key: str, value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump({"profiles": ["edge_npu"], "workloads": [{"network": "alexnet"}], key: value}))
        _load_spec_cleanly(path)


@FUZZ
@given(axis=JSON, entry=JSON)
def test_spec_with_any_axis_and_any_workload(axis: Any, entry: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump({"profiles": ["edge_npu"], "axes": {"array.rows": axis},
                                        "workloads": [{"network": "alexnet"}, entry]}))
        _load_spec_cleanly(path)


@FUZZ
@given(text=st.text(max_size=300))
def test_spec_that_is_any_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        _load_spec_cleanly(path)


@pytest.mark.parametrize("kind", ["device", "fifo", "loop", "dangling", "folder", "missing"])
def test_a_path_that_is_no_regular_file_is_named_for_what_it_is(tmp_path: Path, kind: str) -> None:
    """Every reader refuses what is not a regular file in one line saying what it is (a hostile review found
    /dev/zero, a pipe and a looping link all called 'missing file')."""
    import os

    from hwsim.fileio.bounded import not_a_file, read_text

    path = tmp_path / "x.yaml"
    expected = {"device": "device", "fifo": "pipe", "loop": "symbolic link", "dangling": "symbolic link",
                "folder": "folder", "missing": "missing"}[kind]
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "folder":
        path.mkdir()
    assert expected in (not_a_file(path) or "")
    with pytest.raises(InputError, match=expected):
        read_text(path, 1000, InputError)
