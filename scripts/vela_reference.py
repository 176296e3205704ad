"""Reference per-operator cycles from Arm's Vela compiler for Ethos-U55-256, as test fixtures.

Writes ``tests/hwsim/fixtures/vela/{mobilenet_v2,resnet_block,inception_block}.{json,onnx}`` (see the
README.md there). Three int8 TFLite networks are built with TensorFlow, compiled with Vela for
``ethos-u55-256`` with its default system configuration and memory mode, and Vela's per-operator estimate
is recorded for every operator: the default (Regor, C++) compilation core's debug database, and the
deprecated legacy Python core (``--debug-force-legacy-core``), whose cost model lives in the package's
``ethosu/vela/npu_performance.py``. The same three networks are exported from PyTorch as ONNX (NCHW,
float initializers with more than 64 elements stripped) so that a cost model that reads ONNX can cost them.

Never imported by the project; it needs TensorFlow and Vela, which live only in a throwaway virtualenv, and
the ONNX step needs torch (the project's own environment). Exact commands (versions used for the committed
fixtures: ethos-u-vela 5.2.0, tensorflow-cpu 2.21.0 with keras 3.15.1, numpy 2.4.6, Python 3.11.7; torch
2.14.1, torchvision 0.29.1, onnx 1.23.2)::

    VENV=$(mktemp -d)/vela-env          # a throwaway virtualenv outside the project
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install ethos-u-vela==5.2.0 tensorflow-cpu==2.21.0
    # steps 2-3: build the int8 TFLite models, run Vela (both cores), write the JSON fixtures
    "$VENV/bin/python" scripts/vela_reference.py vela --work "$(mktemp -d)"
    # step 4: export the ONNX twins (project environment), check their shapes against the JSON fixtures
    .venv/bin/python scripts/vela_reference.py onnx

Issue 24 adds a second pair of steps for nine single layers and MobileNetV2 on the system the ``ethos_u55``
profile describes (Vela's Ethos_U55_High_End_Embedded at 1 GHz, memory mode Sram_Only), written to
``tests/hwsim/fixtures/vela/sram_only_1ghz/`` (its README section gives the details)::

    "$VENV/bin/python" scripts/vela_reference.py layers --work "$(mktemp -d)"   # TFLite, vela.ini, Vela, JSON
    .venv/bin/python scripts/vela_reference.py layers-onnx                     # single-layer ONNX twins

Run both steps in this order: the ``onnx`` step adds an ``onnx`` section (which ONNX node is which TFLite
operator, and where shapes or paddings differ) to the JSON files that the ``vela`` step wrote. Both steps
are deterministic (fixed seeds); a rerun reproduces the committed files byte for byte.

The ``vela`` step runs, for each network (``NET`` = mobilenet_v2, resnet_block, inception_block)::

    vela NET.tflite --accelerator-config ethos-u55-256 --verbose-performance --enable-debug-db \
        --output-dir regor
    vela NET.tflite --accelerator-config ethos-u55-256 --verbose-performance --enable-debug-db \
        --output-dir legacy --debug-force-legacy-core

The first as a subprocess (its per-operator table is read from ``regor/NET_debug.xml``); the second in this
process, through ``ethosu.vela.vela.main``, with ``npu_performance.estimate_full_op_performance`` wrapped so
that each scheduled operator's query (shapes, memory areas, block sizes) and result (cycle array, MACs,
bytes per memory area) are recorded as Vela computed them; its totals are checked against Vela's own
``legacy/NET_per-layer.csv``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "hwsim" / "fixtures" / "vela"
NETWORKS = ("mobilenet_v2", "resnet_block", "inception_block")
ACCELERATOR = "ethos-u55-256"
SEED = 0
STRIP_ABOVE = 64  # float initializers with more elements than this lose their values in the .onnx files


# ---------------------------------------------------------------------------------------------------------
# Step 2: the three int8 TFLite networks (TensorFlow environment)
# ---------------------------------------------------------------------------------------------------------


def keras_networks():
    """The three Keras networks, random weights, batch 1, NHWC."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    L = keras.layers

    def mobilenet_v2():
        inp = keras.Input((224, 224, 3), batch_size=1)  # batch 1 (the model itself is unchanged)
        return tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), input_tensor=inp)

    def resnet_block():
        x = keras.Input((56, 56, 256), batch_size=1, name="input")
        y = L.Conv2D(64, 1, use_bias=False, name="conv1")(x)
        y = L.BatchNormalization(name="bn1")(y)
        y = L.ReLU(name="relu1")(y)
        y = L.Conv2D(64, 3, padding="same", use_bias=False, name="conv2")(y)
        y = L.BatchNormalization(name="bn2")(y)
        y = L.ReLU(name="relu2")(y)
        y = L.Conv2D(256, 1, use_bias=False, name="conv3")(y)
        y = L.BatchNormalization(name="bn3")(y)
        y = L.Add(name="add")([y, x])
        y = L.ReLU(name="relu3")(y)
        y = L.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(y)  # 56 -> 28
        y = L.AveragePooling2D(28, name="avgpool")(y)  # global average pool as a 28x28 AVERAGE_POOL_2D
        return keras.Model(x, y, name="resnet_block")

    def inception_block():
        x = keras.Input((28, 28, 192), batch_size=1, name="input")
        b1 = L.Conv2D(64, 1, activation="relu", name="b1_1x1")(x)
        b2 = L.Conv2D(96, 1, activation="relu", name="b2_1x1")(x)
        b2 = L.Conv2D(128, 3, padding="same", activation="relu", name="b2_3x3")(b2)
        b3 = L.Conv2D(16, 1, activation="relu", name="b3_1x1")(x)
        b3 = L.Conv2D(32, 5, padding="same", activation="relu", name="b3_5x5")(b3)
        b4 = L.MaxPooling2D(3, strides=1, padding="same", name="b4_pool")(x)
        b4 = L.Conv2D(32, 1, activation="relu", name="b4_1x1")(b4)
        y = L.Concatenate(axis=-1, name="concat")([b1, b2, b3, b4])
        return keras.Model(x, y, name="inception_block")

    def randomized(build):
        def make():
            model = build()
            rng = np.random.default_rng(SEED)
            for layer in model.layers:  # random BatchNorm statistics too, not the identity defaults
                if isinstance(layer, L.BatchNormalization):
                    gamma = layer.get_weights()[0]
                    n = gamma.shape
                    layer.set_weights(
                        [
                            rng.uniform(0.5, 1.5, n),
                            rng.normal(0, 0.1, n),
                            rng.normal(0, 0.1, n),
                            rng.uniform(0.5, 1.5, n),
                        ]
                    )
            return model

        return make

    nets = {"mobilenet_v2": mobilenet_v2, "resnet_block": resnet_block, "inception_block": inception_block}
    return {k: randomized(v) for k, v in nets.items()}


def to_int8_tflite(model, path: Path) -> None:
    """Full-integer (int8 in, int8 out) quantization with a representative dataset of random data."""
    import numpy as np
    import tensorflow as tf

    shape = list(model.inputs[0].shape)
    assert shape[0] == 1, shape

    def representative():
        rng = np.random.default_rng(SEED)
        for _ in range(8):
            yield [rng.uniform(-1.0, 1.0, shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())


def tflite_ops(path: Path) -> list[dict]:
    """Every operator of a TFLite file: index, builtin name, activation input shapes, output shape."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    produced = {o for op in ops for o in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    out = []
    for op in ops:
        acts = [i for i in op["inputs"] if i >= 0 and (i in produced or i in graph_inputs)]
        out.append(
            {
                "index": int(op["index"]),
                "type": op["op_name"],
                "inputs": [[int(v) for v in tensors[i]["shape"]] for i in acts],
                "output": [int(v) for v in tensors[op["outputs"][0]]["shape"]],
                "output_name": tensors[op["outputs"][0]]["name"],
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# Step 3: Vela, default (Regor) core
# ---------------------------------------------------------------------------------------------------------


def debug_tables(xml_path: Path) -> dict[str, list[dict]]:
    """The tables of Vela's debug database (``--enable-debug-db``), each a list of row dicts."""
    text = xml_path.read_text()
    tables = {}
    for m in re.finditer(r"<table name=[\"'](\w+)[\"']>\s*<!\[CDATA\[\n?(.*?)\]\]>", text, re.DOTALL):
        rows = list(csv.reader(io.StringIO(m.group(2).strip())))
        tables[m.group(1)] = [dict(zip(rows[0], r)) for r in rows[1:]]
    return tables


def _int(v: str) -> int:
    return int(v) if v not in ("", None) else 0


def _shape(row: dict, prefix: str) -> list[int] | None:
    s = [_int(row.get(f"{prefix}_{a}", "")) for a in "nhwc"]
    return s if any(s) else None


AREAS = ("Sram", "Dram", "OnChipFlash", "OffChipFlash")
PURPOSES = ("FeatureMap", "Weights", "Scales", "Lut")


def regor_operators(tables: dict, src_ops: list[dict]) -> list[dict]:
    """One record per row of Regor's ``perf`` table, in schedule order."""
    debug = {r["id"]: r for r in tables["perf_debug"]}
    main = {r["id"]: r for r in tables.get("perf_debug_main", [])}
    group_of = {r["id"]: r["group_id"] for r in tables.get("group", [])}
    source_ext = {r["id"]: _int(r["ext_key"]) for r in tables["source"]}
    by_index = {op["index"]: op for op in src_ops}
    ops = []
    for row in tables["perf"]:
        d, m = debug.get(row["id"], {}), main.get(row["id"], {})
        src = by_index.get(source_ext.get(row["source_id"], -1), {})
        inputs = [s for s in (_shape(d, "ifm_shape"), _shape(d, "ifm2_shape")) if s]
        rec = {
            "id": _int(row["id"]),
            "name": row["name"],
            "type": row["operator"],
            "tflite_type": src.get("type"),
            "tflite_index": src.get("index"),
            "inputs": inputs,
            "output": _shape(d, "ofm_shape"),
            "tflite_inputs": src.get("inputs"),
            "tflite_output": src.get("output"),
        }
        ofm_slice = _shape(d, "ofm_slice")
        if ofm_slice:
            rec["ofm_slice"] = {"offset": _shape(d, "ofm_offset") or [0, 0, 0, 0], "shape": ofm_slice}
        if row["id"] in group_of:  # an activation fused into the operator it follows: no cycles of its own
            rec["fused_into"] = _int(group_of[row["id"]])
            rec.update(cycles=_int(row["op_cycles"]), macs=_int(row["mac_count"]), cycles_by={})
            ops.append(rec)
            continue
        if _int(d.get("kernel_size_x")):
            rec["kernel"] = {
                "size_hw": [_int(d["kernel_size_y"]), _int(d["kernel_size_x"])],
                "stride_hw": [_int(d["kernel_stride_y"]), _int(d["kernel_stride_x"])],
                "padding_tblr": [_int(d.get(f"kernel_padding_{k}")) for k in "TBLR"],
            }
        rec["cycles"] = _int(row["op_cycles"])
        rec["macs"] = _int(row["mac_count"])
        by = {"npu": _int(row["npu_cycles"])}
        if m:
            by.update(mac=_int(m["mac_cycles"]), ao=_int(m["ao_cycles"]), cmd=_int(m["cmd_cycles"]))
        for area in AREAS:
            ac = _int(row.get(f"{area}_ac"))
            if ac:
                by[f"{area}_access"] = ac
            for purpose in PURPOSES:
                v = _int(d.get(f"{area}{purpose}_ac"))
                if v:
                    by[f"{area}{purpose}_access"] = v
        rec["cycles_by"] = by
        nbytes = {}
        for area in AREAS:
            for purpose in PURPOSES:
                for direction in ("read", "write"):
                    v = _int(d.get(f"{area}{purpose}_{direction}"))
                    if v:
                        nbytes[f"{area}{purpose}_{direction}"] = v
        if nbytes:
            rec["bytes"] = nbytes
        areas = {}
        for t in ("ifm", "ifm2", "ofm"):
            if d.get(f"{t}_memory"):
                areas[t] = d[f"{t}_memory"]
        weight_src = [a for a in AREAS if _int(d.get(f"{a}Weights_read")) and a != "Sram"]
        if _int(d.get("weight_total_bytes")):
            areas["weights"] = weight_src[0] if weight_src else "Sram"
            if d.get("weight_buffering") and d["weight_buffering"] != "None":
                areas["weights_staged_in"] = "Sram"
                areas["weights_buffering"] = d["weight_buffering"]
        if areas:
            rec["tensor_areas"] = areas
        formats = {t: d[f"{t}_format"] for t in ("ifm", "ifm2", "ofm") if d.get(f"{t}_format")}
        if formats:
            rec["formats"] = formats
        if m:
            rec["block"] = {
                "traversal": m.get("traversal") or None,
                "ifm": [_int(m[f"ifm_block_{a}"]) for a in "nhwc"],
                "ofm": [_int(m[f"ofm_block_{a}"]) for a in "nhwc"],
            }
        ops.append(rec)
    return ops


# ---------------------------------------------------------------------------------------------------------
# Step 3: Vela, legacy Python core, instrumented in-process
# ---------------------------------------------------------------------------------------------------------


def run_legacy(tflite: Path, outdir: Path, src_ops: list[dict], extra: list[str] | None = None) -> list[dict]:
    from ethosu.vela import npu_performance as perf
    from ethosu.vela import vela
    from ethosu.vela.debug_database import DebugDatabase
    from ethosu.vela.tensor import BandwidthDirection, MemArea, TensorPurpose

    records: dict[int, dict] = {}
    state = {"capture": None}
    orig_full, orig_measure, orig_out = (
        perf.estimate_full_op_performance,
        perf.measure_cycle_cost,
        perf._estimate_output_cycles_per_element,
    )

    def measure(arch, op_type, faf_type, query):
        res = orig_measure(arch, op_type, faf_type, query)
        if state["capture"] is not None:
            state["capture"]["op_cycles"] = int(res.op_cycles)
        return res

    def out_per_elem(arch, op_type, faf_type, query):
        res = orig_out(arch, op_type, faf_type, query)
        if state["capture"] is not None:
            state["capture"]["output_cycles_per_element"] = float(res)
        return res

    def full(arch, schedule, op, prev_op, block_config):
        state["capture"] = cap = {}
        try:
            bws, macs, cycles = orig_full(arch, schedule, op, prev_op, block_config)
        finally:
            state["capture"] = None

        def s4(s):
            return None if s is None else [int(s.batch), int(s.height), int(s.width), int(s.depth)]

        cost = schedule.cost_map[op]
        parent = op.parent_op
        rec = {
            "name": op.name,
            "type": op.op_type.name,
            "_parent": parent,
            "inputs": [s4(s) for s in (op.ifm_read_shape, op.ifm2_read_shape) if s is not None],
            "output": s4(op.ofm_write_shape),
            "full_ifm": s4(op.ifm.shape),
            "full_ofm": s4(op.ofm.shape),
            "kernel": {
                "size_hw": [int(op.kernel.height), int(op.kernel.width)],
                "stride_hw": [int(op.kernel.stride.y), int(op.kernel.stride.x)],
            },
            "macs": int(macs),
            "cycles": float(cycles[perf.PassCycles.Total]),
            "cycles_by": {
                "npu": float(cycles[perf.PassCycles.Npu]),
                "npu_compute": cap.get("op_cycles"),
                "Sram_access": float(cycles[perf.PassCycles.SramAccess]),
                "Dram_access": float(cycles[perf.PassCycles.DramAccess]),
                "OnChipFlash_access": float(cycles[perf.PassCycles.OnChipFlashAccess]),
                "OffChipFlash_access": float(cycles[perf.PassCycles.OffChipFlashAccess]),
            },
        }
        if "output_cycles_per_element" in cap:
            rec["output_cycles_per_element"] = cap["output_cycles_per_element"]
        if getattr(parent, "write_offset", None) is not None:
            rec["ofm_slice"] = {"offset": s4(parent.write_offset), "shape": s4(parent.write_shape)}
        nbytes = {}
        for area in (MemArea.Sram, MemArea.Dram, MemArea.OnChipFlash, MemArea.OffChipFlash, MemArea.Shram):
            for purpose in (TensorPurpose(v) for v in range(TensorPurpose.Size)):
                for direction in (BandwidthDirection.Read, BandwidthDirection.Write):
                    v = float(bws[area][purpose][direction])
                    if v:
                        nbytes[f"{area.name}{purpose.name}_{direction.name.lower()}"] = v
        rec["bytes"] = nbytes
        areas = {
            "ifm": op.ifm.connection.parent_tens.mem_area.name,
            "ofm": op.ofm.connection.parent_tens.mem_area.name,
        }
        if op.ifm2 is not None:
            areas["ifm2"] = op.ifm2.connection.parent_tens.mem_area.name
        if cost.npu_weights_tensor is not None:
            areas["weights"] = cost.npu_weights_tensor.mem_area.name
            if cost.buffered_weight_tensors:
                areas["weights_staged_in"] = cost.buffered_weight_tensors[0].mem_area.name
                areas["weights_buffering"] = cost.buffered_weight_tensors[0].sub_purpose.name
        rec["tensor_areas"] = areas
        rec["formats"] = {"ifm": op.ifm.format.name, "ofm": op.ofm.format.name}
        if op.ifm2 is not None:
            rec["formats"]["ifm2"] = op.ifm2.format.name
        rec["block"] = {
            "ifm": s4(block_config.ifm_block),
            "ofm": s4(block_config.ofm_block),
            "acc": {5: "Acc16", 6: "Acc32", 7: "Acc40"}.get(
                int(block_config.acc_type), str(block_config.acc_type)
            ),
            "partkernel": bool(block_config.is_partkernel),
        }
        records[id(op)] = rec
        return bws, macs, cycles

    perf.measure_cycle_cost, perf._estimate_output_cycles_per_element = measure, out_per_elem
    perf.estimate_full_op_performance = full
    argv = [str(tflite), "--accelerator-config", ACCELERATOR, "--verbose-performance", "--enable-debug-db"]
    argv += ["--output-dir", str(outdir), "--debug-force-legacy-core"]
    argv += extra or []
    log = outdir.parent / f"{tflite.stem}_legacy.log"
    old = sys.stdout
    try:
        with open(log, "w") as fh:
            sys.stdout = fh
            rc = vela.main(argv)
    finally:
        sys.stdout = old
        perf.estimate_full_op_performance, perf.measure_cycle_cost = orig_full, orig_measure
        perf._estimate_output_cycles_per_element = orig_out
    assert rc == 0, f"legacy vela failed, see {log}"

    # source operator (TFLite index) of each scheduled operator, from Vela's debug database
    suid_to_src = {v: k for k, v in DebugDatabase._sourceUID.items()}
    by_index = {op["index"]: op for op in src_ops}
    ops = list(records.values())
    for rec in ops:
        parent = rec.pop("_parent")
        src_uid = DebugDatabase._optimisedUID.get(parent, (None, DebugDatabase.NULLREF))[1]
        src = suid_to_src.get(src_uid)
        idx = getattr(src, "op_index", None)
        rec["tflite_index"] = idx
        rec["tflite_type"] = by_index[idx]["type"] if idx in by_index else None
        if idx in by_index:
            rec["tflite_inputs"] = by_index[idx]["inputs"]
            rec["tflite_output"] = by_index[idx]["output"]
    # cross-check against Vela's own per-layer CSV
    with open(outdir / f"{tflite.stem}_per-layer.csv") as fh:
        rows = [r for r in csv.DictReader(fh)]
    assert len(rows) == len(ops), (len(rows), len(ops))
    for r, rec in zip(rows, ops):
        assert r["Name"] == rec["name"], (r["Name"], rec["name"])
        assert abs(float(r["Op Cycles"]) - rec["cycles"]) < 1e-6 * max(1.0, rec["cycles"]), (r, rec["cycles"])
    for rec in ops:
        rec["cycles"] = _num(rec["cycles"])
        rec["cycles_by"] = {k: _num(v) for k, v in rec["cycles_by"].items() if v}
        rec["bytes"] = {k: _num(v) for k, v in rec["bytes"].items()}
    return ops


def dump_json(record: dict) -> str:
    """JSON with one line per operator, per TFLite op and per ONNX match (keeps the files small)."""

    def block(value, indent):
        pad = " " * indent
        if isinstance(value, dict) and value:
            items = [f"{pad} {json.dumps(k)}: {block(v, indent + 1).lstrip()}" for k, v in value.items()]
            return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return pad + "[\n" + ",\n".join(pad + " " + json.dumps(v) for v in value) + "\n" + pad + "]"
        return pad + json.dumps(value)

    text = block(record, 0) + "\n"
    assert json.loads(text) == json.loads(json.dumps(record))
    return text


def _first_row(path: Path) -> dict:
    with open(path) as fh:
        return next(csv.DictReader(fh))


def _num(v):
    if v is None:
        return None
    f = float(v)
    return int(f) if f.is_integer() else round(f, 3)


def vela_step(work: Path) -> None:
    versions = tool_versions()
    vela_version = versions["ethos-u-vela"]
    work.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    builders = keras_networks()
    for net in NETWORKS:
        tfl = work / f"{net}.tflite"
        to_int8_tflite(builders[net](), tfl)
        src_ops = tflite_ops(tfl)

        regor_dir = work / "regor"
        cmd = [
            "vela",
            tfl.name,
            "--accelerator-config",
            ACCELERATOR,
            "--verbose-performance",
            "--enable-debug-db",
        ]
        cmd += ["--output-dir", "regor"]
        vela_exe = str(Path(sys.executable).with_name("vela"))
        res = subprocess.run([vela_exe, *cmd[1:]], check=False, cwd=work, capture_output=True, text=True)
        (work / f"{net}_regor.log").write_text(res.stdout + res.stderr)
        assert res.returncode == 0, res.stderr[-2000:]
        log = res.stdout + res.stderr
        sys_cfg = re.search(r"System configuration\s+(\S+)", log).group(1)
        mem_mode = re.search(r"Memory mode\s+(\S+)", log).group(1)
        tables = debug_tables(regor_dir / f"{net}_debug.xml")
        ops = regor_operators(tables, src_ops)
        summary = _first_row(regor_dir / f"{net}_summary_{sys_cfg}.csv")
        total = sum(op["cycles"] for op in ops)
        assert total == int(float(summary["cycles_total"])), (total, summary["cycles_total"])

        legacy_ops = run_legacy(tfl, work / "legacy", src_ops)
        legacy_summary = _first_row(work / "legacy" / f"{net}_summary_{sys_cfg}.csv")

        record = {
            "tool": f"ethos-u-vela {vela_version}",
            "versions": versions,
            "command": " ".join(cmd),
            "accelerator": ACCELERATOR,
            "compiler_core": "Regor (C++), Vela's default core",
            "system_config": sys_cfg,
            "memory_mode": mem_mode,
            "config_file": "ethosu/config_files/Arm/vela.ini (Vela's default)",
            "core_clock_hz": float(summary["core_clock"]),
            **system_memories(sys_cfg, mem_mode),
            "model": {
                "source": _MODEL_NOTES[net],
                "input": src_ops[0]["inputs"][0],
                "quantization": "full int8 (TFLiteConverter, representative dataset: 8 uniform(-1,1) samples)",
                "tflite_ops": [{k: v for k, v in op.items() if k != "output_name"} for op in src_ops],
            },
            "operators": ops,
            "total_cycles": total,
            "total_macs": int(float(summary["nn_macs"])),
            "summary_cycles": {
                k: _num(summary[k])
                for k in ("cycles_npu", "cycles_sram_access", "cycles_off_chip_flash_access", "cycles_total")
            },
            "legacy_core": {
                "command": " ".join(cmd).replace("--output-dir regor", "--output-dir legacy")
                + " --debug-force-legacy-core",
                "note": "deprecated legacy Python core; cost model in ethosu/vela/npu_performance.py. An "
                "operator's cycles are the max of its NPU cycles and each memory area's access cycles; "
                "total_cycles is their sum (Vela's summary cycles_total).",
                "operators": legacy_ops,
                "total_cycles": _num(legacy_summary["cycles_total"]),
                "sum_of_operator_cycles": _num(sum(op["cycles"] for op in legacy_ops)),
                "total_macs": int(float(legacy_summary["nn_macs"])),
                "summary_cycles": {
                    k: _num(legacy_summary[k])
                    for k in (
                        "cycles_npu",
                        "cycles_sram_access",
                        "cycles_off_chip_flash_access",
                        "cycles_total",
                    )
                },
            },
        }
        path = FIXTURES / f"{net}.json"
        path.write_text(dump_json(record))
        print(
            f"{net}: regor {total} cycles ({len(ops)} rows), legacy {record['legacy_core']['total_cycles']}"
            f" cycles ({len(legacy_ops)} ops) -> {path.relative_to(ROOT)}"
        )


def tool_versions() -> dict[str, str]:
    """The versions of the tools a fixture was made with (Vela, TensorFlow, Keras, numpy, Python)."""
    import ethosu.vela
    import keras
    import numpy
    import tensorflow as tf

    return {"ethos-u-vela": ethosu.vela.__version__, "tensorflow-cpu": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "python": sys.version.split()[0]}


def system_memories(sys_cfg: str, mem_mode: str) -> dict:
    """The memories of Vela's default vela.ini system config and what the memory mode puts in each."""
    import ethosu.vela

    return _memories_from(Path(ethosu.vela.__file__).parents[1] / "config_files" / "Arm" / "vela.ini", sys_cfg,
                          mem_mode)


_MODEL_NOTES = {
    "mobilenet_v2": "tf.keras.applications.MobileNetV2(weights=None, input_shape=(224,224,3)), alpha 1.0",
    "resnet_block": "ResNet-50 bottleneck at 56x56x256: 1x1 conv 64+BN+ReLU, 3x3 conv 64 (same)+BN+ReLU, "
    "1x1 conv 256+BN, ADD block input, ReLU; MaxPool 3x3 s2 (same: pad bottom/right 1) -> 28x28x256; "
    "AveragePooling2D(28) -> 1x1x256 (a global average pool as AVERAGE_POOL_2D)",
    "inception_block": "inception block at 28x28x192: 1x1 conv 64 | 1x1 conv 96 -> 3x3 conv 128 | 1x1 conv 16 "
    "-> 5x5 conv 32 | MaxPool 3x3 s1 (same) -> 1x1 conv 32; each conv with bias and ReLU; CONCATENATION "
    "on channels (256)",
}


# ---------------------------------------------------------------------------------------------------------
# Step 4: the same networks as ONNX (torch environment)
# ---------------------------------------------------------------------------------------------------------


def torch_networks():
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(SEED)

    def cbr(cin, cout, k, relu=True, bn=True):
        layers = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        if relu:
            layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    class ResnetBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.branch = nn.Sequential(cbr(256, 64, 1), cbr(64, 64, 3), cbr(64, 256, 1, relu=False))
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # 56 -> 28 (Keras: same, pad bottom/right)
            self.avgpool = nn.AvgPool2d(28)  # 28x28 -> 1x1, as Keras AveragePooling2D(28)

        def forward(self, x):
            return self.avgpool(self.maxpool(self.relu(self.branch(x) + x)))

    class InceptionBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = cbr(192, 64, 1, bn=False)
            self.b2 = nn.Sequential(cbr(192, 96, 1, bn=False), cbr(96, 128, 3, bn=False))
            self.b3 = nn.Sequential(cbr(192, 16, 1, bn=False), cbr(16, 32, 5, bn=False))
            self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), cbr(192, 32, 1, bn=False))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)

    def randomized(build):
        def make():
            model = build()
            with torch.no_grad():  # random BatchNorm statistics too, not the identity defaults
                for mod in model.modules():
                    if isinstance(mod, nn.BatchNorm2d):
                        mod.weight.uniform_(0.5, 1.5)
                        mod.bias.normal_(0, 0.1)
                        mod.running_mean.normal_(0, 0.1)
                        mod.running_var.uniform_(0.5, 1.5)
            return model

        return make

    return {
        "mobilenet_v2": (randomized(lambda: torchvision.models.mobilenet_v2(weights=None)), (1, 3, 224, 224)),
        "resnet_block": (randomized(ResnetBlock), (1, 256, 56, 56)),
        "inception_block": (randomized(InceptionBlock), (1, 192, 28, 28)),
    }


def strip_initializers(model) -> int:
    """Clear the values of every float initializer with more than STRIP_ABOVE elements; keep dims and type."""
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    n = 0
    for init in model.graph.initializer:
        size = 1
        for d in init.dims:
            size *= d
        if init.data_type in floats and size > STRIP_ABOVE:
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.ClearField("double_data")
            init.ClearField("int32_data")  # float16/bfloat16 values live here
            n += 1
    return n


_COMPARE = {  # ONNX op -> TFLite builtin(s) it corresponds to
    "Conv": ("CONV_2D", "DEPTHWISE_CONV_2D"),
    "Add": ("ADD",),
    "MaxPool": ("MAX_POOL_2D",),
    "AveragePool": ("AVERAGE_POOL_2D",),
    "GlobalAveragePool": ("MEAN",),
    "Concat": ("CONCATENATION",),
    "Gemm": ("FULLY_CONNECTED",),
}


def onnx_nodes(model) -> list[dict]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in inferred.graph.node:
        if node.op_type not in _COMPARE:
            continue
        acts = [i for i in node.input if i and i not in inits]
        attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
        rec = {
            "node": node.name,
            "op": node.op_type,
            "inputs": [shapes.get(i) for i in acts],
            "output": shapes.get(node.output[0]),
        }
        if node.op_type in ("Conv", "MaxPool", "AveragePool"):
            rec["kernel"] = attrs.get("kernel_shape")
            rec["strides"] = attrs.get("strides")
            rec["pads"] = attrs.get("pads")
            rec["group"] = attrs.get("group", 1)
        out.append(rec)
    return out


def _nhwc(s):
    if s is None:
        return None
    if len(s) == 4:
        return [s[0], s[2], s[3], s[1]]
    return list(s)


def compare(net: str, nodes: list[dict], tfl_ops: list[dict], vela_ops: list[dict]) -> dict:
    """Match ONNX nodes to TFLite operators of the same kind by shape (NCHW -> NHWC), in order.

    For matched Conv/MaxPool/AveragePool nodes the padding is compared too, against the padding Vela used.
    """
    pool = [op for op in tfl_ops if any(op["type"] in v for v in _COMPARE.values())]
    vela_pad = {}
    for op in vela_ops:
        if "fused_into" not in op and "kernel" in op and op.get("tflite_index") is not None:
            vela_pad.setdefault(op["tflite_index"], op["kernel"]["padding_tblr"])
    used, matches, diffs = set(), [], []
    for n in nodes:
        want_in = [_nhwc(s) for s in n["inputs"]]
        want_out = _nhwc(n["output"])
        cands = [op for op in pool if op["index"] not in used and op["type"] in _COMPARE[n["op"]]]
        exact = [op for op in cands if op["output"] == want_out and sorted(op["inputs"]) == sorted(want_in)]
        loose = [op for op in cands if _elems(op["output"]) == _elems(want_out)]
        pick = (exact or loose or [None])[0]
        m = {
            "onnx_node": n["node"],
            "onnx_op": n["op"],
            "onnx_inputs": n["inputs"],
            "onnx_output": n["output"],
        }
        if pick is None:
            m["tflite_index"] = None
            diffs.append(f"ONNX {n['op']} {n['node']} {n['inputs']}->{n['output']}: no TFLite counterpart")
        else:
            used.add(pick["index"])
            m.update(tflite_index=pick["index"], tflite_type=pick["type"], shapes_equal=bool(exact))
            if not exact:
                diffs.append(
                    f"ONNX {n['op']} {n['node']} {n['inputs']}->{n['output']} vs TFLite {pick['type']} "
                    f"#{pick['index']} {pick['inputs']}->{pick['output']} (NHWC)"
                )
        if pick is not None and n.get("pads") is not None and pick["index"] in vela_pad:
            t, l, b, r = n["pads"]
            m["onnx_pads_tblr"] = [t, b, l, r]
            m["vela_pads_tblr"] = vela_pad[pick["index"]]
            if m["onnx_pads_tblr"] != m["vela_pads_tblr"]:
                diffs.append(
                    f"padding: ONNX {n['op']} {n['node']} k{n['kernel']} s{n['strides']} pads (t,b,l,r) "
                    f"{m['onnx_pads_tblr']} vs Vela {m['vela_pads_tblr']} for TFLite {pick['type']} #{pick['index']}"
                )
        matches.append(m)
    for op in pool:
        if op["index"] not in used:
            diffs.append(
                f"TFLite {op['type']} #{op['index']} {op['inputs']}->{op['output']}: no ONNX counterpart"
            )
    return {"matches": matches, "differences": diffs}


def _elems(s):
    n = 1
    for d in s or []:
        n *= d
    return n


def onnx_step() -> None:
    import onnx
    import torch

    for net, (build, shape) in torch_networks().items():
        m = build().eval()
        x = torch.randn(*shape)
        path = FIXTURES / f"{net}.onnx"
        torch.onnx.export(
            m.eval(), (x,), str(path), dynamo=False, opset_version=13, do_constant_folding=False
        )
        model = onnx.load(str(path))
        n = strip_initializers(model)
        onnx.save(model, str(path))
        model = onnx.load(str(path))  # the stripped file loads and still shape-infers
        nodes = onnx_nodes(model)
        ops = [nd.op_type for nd in model.graph.node]
        fixture = FIXTURES / f"{net}.json"
        report = ""
        if fixture.exists():
            rec = json.loads(fixture.read_text())
            cmp = compare(net, nodes, rec["model"]["tflite_ops"], rec["operators"])
            rec["onnx"] = {
                "file": path.name,
                "exported_with": f"torch {torch.__version__}, onnx {onnx.__version__}: torch.onnx.export(m.eval(), "
                "(x,), path, dynamo=False, opset_version=13, do_constant_folding=False); float initializers "
                f"with more than {STRIP_ABOVE} elements stripped (dims and data_type kept)",
                "input": list(shape),
                "op_counts": {t: ops.count(t) for t in sorted(set(ops))},
                **cmp,
            }
            fixture.write_text(dump_json(rec))
            report = (
                f", {sum(1 for x in cmp['matches'] if x.get('shapes_equal'))}/{len(cmp['matches'])} "
                f"compared nodes equal to TFLite; differences: {len(cmp['differences'])}"
            )
            for d in cmp["differences"]:
                print("   ", d)
        print(
            f"{net}: {path.stat().st_size} bytes, {n} initializers stripped, {len(model.graph.node)} nodes{report}"
        )


# ---------------------------------------------------------------------------------------------------------
# Mode 2 (issue 24): single layers and MobileNetV2, Sram_Only, Ethos_U55_High_End_Embedded at 1 GHz
# ---------------------------------------------------------------------------------------------------------

LAYER_DIR = FIXTURES / "sram_only_1ghz"
LAYER_SYSTEM_CONFIG = "Ethos_U55_High_End_Embedded_1GHz"
LAYER_MEMORY_MODE = "Sram_Only"
LAYER_CORE_CLOCK = 1.0e9  # the ethos_u55 profile's clock
LAYER_INI = "vela_u55_1ghz.ini"

# name -> (Keras input shape without batch, what the layer is, ONNX twin: (kind, C_in, C_out, k, stride, H_in,
# pads (top, left, bottom, right) as Vela pads it)). Weights random, bias on, no activation.
SINGLE_LAYERS = {
    "conv3x3_64to64_56": ((56, 56, 64), "Conv2D(64, 3, padding='same') on 56x56x64", ("conv", 64, 64, 3, 1, 56, (1, 1, 1, 1))),
    "conv1x1_256to64_56": ((56, 56, 256), "Conv2D(64, 1) on 56x56x256", ("conv", 256, 64, 1, 1, 56, (0, 0, 0, 0))),
    "dw3x3_32_112": ((112, 112, 32), "DepthwiseConv2D(3, padding='same') on 112x112x32", ("dw", 32, 32, 3, 1, 112, (1, 1, 1, 1))),
    "fc_1024to1000": ((1024,), "Dense(1000) on a 1024-vector", ("fc", 1024, 1000, 1, 1, 1, (0, 0, 0, 0))),
    "conv3x3s2_64to128_56": ((56, 56, 64), "Conv2D(128, 3, strides=2, padding='same') on 56x56x64", ("conv", 64, 128, 3, 2, 56, (0, 0, 1, 1))),
    "conv3x3s2_3to32_224": ((224, 224, 3), "Conv2D(32, 3, strides=2, padding='same') on 224x224x3 (MobileNetV2's stem)", ("conv", 3, 32, 3, 2, 224, (0, 0, 1, 1))),
    "conv5x5_64to64_28": ((28, 28, 64), "Conv2D(64, 5, padding='same') on 28x28x64", ("conv", 64, 64, 5, 1, 28, (2, 2, 2, 2))),
    "conv1x1_32to192_28": ((28, 28, 32), "Conv2D(192, 1) on 28x28x32 (a MobileNetV2 expansion)", ("conv", 32, 192, 1, 1, 28, (0, 0, 0, 0))),
    "dw3x3s2_96_112": ((112, 112, 96), "DepthwiseConv2D(3, strides=2, padding='same') on 112x112x96", ("dw", 96, 96, 3, 2, 112, (0, 0, 1, 1))),
}
LAYER_MODELS = (*SINGLE_LAYERS, "mobilenet_v2")


def keras_layer_models():
    """Builders for the single-layer models and MobileNetV2 (random weights, batch 1, NHWC)."""
    import keras

    L = keras.layers

    def single(name):
        shape = SINGLE_LAYERS[name][0]
        kind, _cin, cout, k, stride, _h, _pads = SINGLE_LAYERS[name][2]

        def make():
            keras.utils.set_random_seed(SEED)
            x = keras.Input(shape, batch_size=1, name="input")
            if kind == "conv":
                y = L.Conv2D(cout, k, strides=stride, padding="same", name=name)(x)
            elif kind == "dw":
                y = L.DepthwiseConv2D(k, strides=stride, padding="same", name=name)(x)
            else:
                y = L.Dense(cout, name=name)(x)
            return keras.Model(x, y, name=name)

        return make

    builders = {name: single(name) for name in SINGLE_LAYERS}
    builders["mobilenet_v2"] = keras_networks()["mobilenet_v2"]
    return builders


def layer_config(work: Path) -> Path:
    """A vela.ini with Vela's own Ethos_U55_High_End_Embedded system config (every key copied from the installed
    ``config_files/Arm/vela.ini``) under a new name with ``core_clock`` = 1 GHz, and its Sram_Only memory mode."""
    import configparser

    import ethosu.vela

    ini = Path(ethosu.vela.__file__).parents[1] / "config_files" / "Arm" / "vela.ini"
    src = configparser.ConfigParser()
    src.optionxform = str  # keep key case (Sram_clock_scale)
    src.read(ini)
    sysc = dict(src["System_Config.Ethos_U55_High_End_Embedded"])
    mode = dict(src[f"Memory_Mode.{LAYER_MEMORY_MODE}"])
    lines = [
        "; Vela's Ethos_U55_High_End_Embedded system config (config_files/Arm/vela.ini of ethos-u-vela "
        f"{ethosu.vela.__version__}), every key copied, core_clock set to 1 GHz; and its Sram_Only memory mode",
        f"[System_Config.{LAYER_SYSTEM_CONFIG}]",
    ]
    sysc["core_clock"] = f"{LAYER_CORE_CLOCK:.0f}"
    lines += [f"{k}={v}" for k, v in sysc.items()]
    lines += ["", f"[Memory_Mode.{LAYER_MEMORY_MODE}]"] + [f"{k}={v}" for k, v in mode.items()]
    path = work / LAYER_INI
    path.write_text("\n".join(lines) + "\n")
    return path


def _layer_row(op: dict) -> dict:
    """One Regor operator, compacted: what it is, its shapes, its cycles (total and by unit), bytes, block."""
    by = op.get("cycles_by", {})
    row = {
        "id": op["id"],
        "type": op["type"],
        "tflite_index": op["tflite_index"],
        "tflite_type": op["tflite_type"],
        "inputs": op["inputs"],
        "output": op["output"],
    }
    if "kernel" in op:
        row["kernel"] = op["kernel"]
    if "fused_into" in op:
        row["fused_into"] = op["fused_into"]
        return row
    row["macs"] = op["macs"]
    row["cycles"] = op["cycles"]
    row["mac_cycles"] = by.get("mac")
    row["output_cycles"] = by.get("ao")
    row["cmd_cycles"] = by.get("cmd")
    row["npu_cycles"] = by.get("npu")
    row["sram_access_cycles"] = by.get("Sram_access", 0)
    row["bytes"] = op.get("bytes", {})
    if "block" in op:
        row["block"] = op["block"]
    if "formats" in op:
        row["formats"] = op["formats"]
    return row


def layers_vela_step(work: Path, only: list[str] | None = None) -> None:
    versions = tool_versions()
    vela_version = versions["ethos-u-vela"]
    work.mkdir(parents=True, exist_ok=True)
    LAYER_DIR.mkdir(parents=True, exist_ok=True)
    ini = layer_config(work)
    (LAYER_DIR / LAYER_INI).write_text(ini.read_text())
    builders = keras_layer_models()
    vela_exe = str(Path(sys.executable).with_name("vela"))
    for net in only or LAYER_MODELS:
        tfl = work / f"{net}.tflite"
        to_int8_tflite(builders[net](), tfl)
        src_ops = tflite_ops(tfl)
        args = [
            f"{net}.tflite",
            "--accelerator-config",
            ACCELERATOR,
            "--config",
            LAYER_INI,
            "--system-config",
            LAYER_SYSTEM_CONFIG,
            "--memory-mode",
            LAYER_MEMORY_MODE,
            "--verbose-performance",
            "--enable-debug-db",
        ]
        res = subprocess.run(
            [vela_exe, *args, "--output-dir", "regor"], check=False, cwd=work, capture_output=True, text=True
        )
        (work / f"{net}_regor.log").write_text(res.stdout + res.stderr)
        assert res.returncode == 0, res.stderr[-2000:]
        log = res.stdout + res.stderr
        assert re.search(rf"System configuration\s+{LAYER_SYSTEM_CONFIG}\b", log), "system config not used"
        assert re.search(rf"Memory mode\s+{LAYER_MEMORY_MODE}\b", log), "memory mode not used"
        tables = debug_tables(work / "regor" / f"{net}_debug.xml")
        ops = regor_operators(tables, src_ops)
        summary = _first_row(work / "regor" / f"{net}_summary_{LAYER_SYSTEM_CONFIG}.csv")
        assert float(summary["core_clock"]) == LAYER_CORE_CLOCK, summary["core_clock"]
        total = sum(op["cycles"] for op in ops)
        assert total == int(float(summary["cycles_total"])), (total, summary["cycles_total"])
        with open(work / "regor" / f"{net}_per-layer.csv") as fh:  # Vela's own per-layer CSV, same total
            csv_total = sum(float(r.get("NPU cycles") or r.get("Op Cycles") or 0) for r in csv.DictReader(fh))

        legacy_dir = work / "legacy"
        legacy_ops = run_legacy(
            tfl,
            legacy_dir,
            src_ops,
            extra=["--config", str(ini), "--system-config", LAYER_SYSTEM_CONFIG, "--memory-mode", LAYER_MEMORY_MODE],
        )
        legacy_summary = _first_row(legacy_dir / f"{net}_summary_{LAYER_SYSTEM_CONFIG}.csv")
        legacy_by_index: dict = {}
        for op in legacy_ops:
            legacy_by_index[op["tflite_index"]] = legacy_by_index.get(op["tflite_index"], 0) + op["cycles"]

        record = {
            "tool": f"ethos-u-vela {vela_version}",
            "versions": versions,
            "command": "vela " + " ".join(args) + " --output-dir regor",
            "accelerator": ACCELERATOR,
            "compiler_core": "Regor (C++), Vela's default core",
            "system_config": LAYER_SYSTEM_CONFIG,
            "memory_mode": LAYER_MEMORY_MODE,
            "config_file": f"{LAYER_INI} (beside this file): Vela's Ethos_U55_High_End_Embedded with core_clock 1e9",
            "core_clock_hz": float(summary["core_clock"]),
            **_memories_from(ini, LAYER_SYSTEM_CONFIG, LAYER_MEMORY_MODE),
            "model": {
                "name": net,
                "source": SINGLE_LAYERS[net][1] if net in SINGLE_LAYERS else _MODEL_NOTES["mobilenet_v2"],
                "input": src_ops[0]["inputs"][0],
                "quantization": "full int8 (TFLiteConverter, representative dataset: 8 uniform(-1,1) samples)",
                "tflite_ops": [{k: v for k, v in op.items() if k != "output_name"} for op in src_ops],
            },
            "operators": [_layer_row(op) for op in ops],
            "total_cycles": total,
            "total_macs": int(float(summary["nn_macs"])),
            "summary_cycles": {
                k: _num(summary[k]) for k in ("cycles_npu", "cycles_sram_access", "cycles_total") if k in summary
            },
            "legacy_core": {
                "command": "vela " + " ".join(args) + " --output-dir legacy --debug-force-legacy-core",
                "total_cycles": _num(legacy_summary["cycles_total"]),
                "cycles_by_tflite_index": {str(k): _num(v) for k, v in sorted(legacy_by_index.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))},
            },
        }
        path = LAYER_DIR / f"{net}.json"
        path.write_text(dump_json(record))
        print(
            f"{net}: regor {total} cycles ({len(ops)} rows; per-layer CSV {csv_total:.0f}), legacy "
            f"{record['legacy_core']['total_cycles']} -> {path.relative_to(ROOT)}"
        )


def _memories_from(ini: Path, sys_cfg: str, mem_mode: str) -> dict:
    """The memories of a vela.ini system config and what the memory mode puts in each (as system_memories)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ini)
    sysc, mode = cfg[f"System_Config.{sys_cfg}"], cfg[f"Memory_Mode.{mem_mode}"]
    axi_bytes = 8  # Ethos-U55 AXI port width (architecture_features.py, regor.cpp)
    memories = {}
    for port in ("axi0", "axi1"):
        name = sysc[f"{port}_port"]
        scale = float(sysc.get(f"{name}_clock_scale", 1))
        memories[name] = {
            "port": port,
            "clock_scale": scale,
            "bytes_per_cycle": axi_bytes * scale * int(sysc.get(f"{name}_ports_used", 1)),
            "burst_length_bytes": int(sysc.get(f"{name}_burst_length", 1)),
            "read_latency_cycles": int(sysc.get(f"{name}_read_latency", 0)),
            "write_latency_cycles": int(sysc.get(f"{name}_write_latency", 0)),
        }
    port_mem = {"Axi0": sysc["axi0_port"], "Axi1": sysc["axi1_port"]}
    return {
        "memories": memories,
        "placement": {
            "const (weights, scales)": port_mem[mode["const_mem_area"]],
            "arena (feature maps)": port_mem[mode["arena_mem_area"]],
            "cache (weight staging)": port_mem[mode["cache_mem_area"]],
        },
    }


def single_layer_onnx(name: str):
    """The ONNX twin of one single-layer model: one Conv (a fully connected layer as a 1x1 Conv on a 1x1 map,
    since ksm-sim reads ONNX CNNs), NCHW, the padding Vela applied, weight and bias without values."""
    import onnx
    from onnx import TensorProto, helper

    kind, cin, cout, k, stride, h, (pt, pl, pb, pr) = SINGLE_LAYERS[name][2]
    group = cin if kind == "dw" else 1
    ho = (h + pt + pb - k) // stride + 1
    w, b = onnx.TensorProto(), onnx.TensorProto()  # dims and type, no values (as strip_initializers leaves them)
    for t, tname, dims in ((w, "weight", [cout, cin // group, k, k]), (b, "bias", [cout])):
        t.name, t.data_type = tname, TensorProto.FLOAT
        t.dims.extend(dims)
    node = helper.make_node(
        "Conv", ["input", "weight", "bias"], ["output"], name=name, kernel_shape=[k, k],
        strides=[stride, stride], pads=[pt, pl, pb, pr], group=group,
    )
    graph = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, cin, h, h])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, ho, ho])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="vela_reference.py")
    model.ir_version = 8
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return model


def layers_onnx_step() -> None:
    """ONNX twins of the single layers; MobileNetV2 is compared with the torchvision export already here."""
    import onnx

    for name in SINGLE_LAYERS:
        path = LAYER_DIR / f"{name}.onnx"
        onnx.save(single_layer_onnx(name), str(path))
        fixture = LAYER_DIR / f"{name}.json"
        rec = json.loads(fixture.read_text())
        nodes = onnx_nodes(onnx.load(str(path)))
        tfl = rec["model"]["tflite_ops"]
        nd = nodes[0]
        conv = [op for op in rec["operators"] if "fused_into" not in op and op.get("macs")]
        assert len(conv) == 1, conv
        want_out = conv[0]["output"]
        got = _nhwc(nd["output"])
        if tfl[0]["type"] == "FULLY_CONNECTED":  # [1, 1000] vs [1, 1, 1, 1000]
            assert got == [1, 1, 1, want_out[-1]], (got, want_out)
        else:
            assert got == want_out, (got, want_out)
            t, left, b, r = nd["pads"]
            assert [t, b, left, r] == conv[0]["kernel"]["padding_tblr"], (nd["pads"], conv[0]["kernel"])
        rec["onnx"] = {
            "file": path.name,
            "made_with": f"onnx {onnx.__version__} helper (scripts/vela_reference.py single_layer_onnx): one Conv, "
            "NCHW, Vela's padding, weight and bias with dims and no values",
            "node": nd,
        }
        fixture.write_text(dump_json(rec))
        print(f"{name}: {path.stat().st_size} bytes, output {nd['output']}")
    # MobileNetV2: the torchvision export of the default-config fixtures, matched to this Keras model's TFLite ops
    fixture = LAYER_DIR / "mobilenet_v2.json"
    rec = json.loads(fixture.read_text())
    model = onnx.load(str(FIXTURES / "mobilenet_v2.onnx"))
    vela_ops = [{**op, "kernel": op.get("kernel")} for op in rec["operators"] if "kernel" in op]
    cmp = compare("mobilenet_v2", onnx_nodes(model), rec["model"]["tflite_ops"], vela_ops)
    rec["onnx"] = {
        "file": "../mobilenet_v2.onnx",
        "note": "torchvision mobilenet_v2(weights=None), the default-config fixture's export; every Conv, Add and "
        "the classifier matched to this Keras model's TFLite operator of the same shapes",
        **cmp,
    }
    fixture.write_text(dump_json(rec))
    eq = sum(1 for m in cmp["matches"] if m.get("shapes_equal"))
    print(f"mobilenet_v2: {eq}/{len(cmp['matches'])} ONNX nodes shape-equal to TFLite; differences:")
    for d in cmp["differences"]:
        print("   ", d)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    v = sub.add_parser(
        "vela", help="steps 2-3: TFLite models, Vela runs, JSON fixtures (TensorFlow+Vela env)"
    )
    v.add_argument(
        "--work", type=Path, required=True, help="scratch folder for the .tflite files and Vela output"
    )
    sub.add_parser("onnx", help="step 4: ONNX twins of the three networks (torch env)")
    lv = sub.add_parser(
        "layers",
        help="issue 24: single layers and MobileNetV2, Sram_Only at 1 GHz: TFLite, Vela, JSON (TensorFlow+Vela env)",
    )
    lv.add_argument("--work", type=Path, required=True, help="scratch folder for the .tflite files and Vela output")
    lv.add_argument("--only", nargs="*", choices=LAYER_MODELS, help="make only these models (default: all)")
    sub.add_parser("layers-onnx", help="issue 24: ONNX twins of the single layers (project env, needs onnx)")
    args = ap.parse_args(argv)
    if args.step == "vela":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        vela_step(args.work.resolve())
    elif args.step == "layers":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        layers_vela_step(args.work.resolve(), args.only)
    elif args.step == "layers-onnx":
        layers_onnx_step()
    else:
        onnx_step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
