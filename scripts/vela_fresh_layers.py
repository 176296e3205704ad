"""Vela cycles for layers the ``ethos_u55`` profile was not fitted to: an independent check of its accuracy.

The profile was re-derived and checked against the layers in ``tests/hwsim/fixtures/vela/sram_only_1ghz``
(made by ``scripts/vela_reference.py layers``). This script makes a second, disjoint set the same way (int8
TFLite models built in Keras with random weights; Vela 5.2.0 for ``ethos-u55-256``, its
Ethos_U55_High_End_Embedded system config at the profile's 1 GHz, memory mode Sram_Only; Regor's debug
database read per operator) and writes ``tests/hwsim/fixtures/vela/fresh/`` (its README.md gives the details).
It reuses ``vela_reference.py``'s model conversion, Vela runner helpers, ini and JSON writer.

Never imported by the project. Exact commands (versions of the committed fixture: ethos-u-vela 5.2.0,
tensorflow-cpu 2.21.0 with keras 3.15.1, numpy 2.4.6, Python 3.11.7; onnx 1.23.2 in the project env)::

    VENV=$(mktemp -d)/vela-env
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install ethos-u-vela==5.2.0 tensorflow-cpu==2.21.0
    "$VENV/bin/python" scripts/vela_fresh_layers.py vela --work "$(mktemp -d)"   # TFLite, Vela, *.json
    .venv/bin/python scripts/vela_fresh_layers.py onnx                          # *.onnx, "onnx" in *.json

Each model is run as::

    vela NAME.tflite --accelerator-config ethos-u55-256 --config vela_u55_1ghz.ini \
        --system-config Ethos_U55_High_End_Embedded_1GHz --memory-mode Sram_Only \
        --verbose-performance --enable-debug-db --output-dir regor
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vela_reference as vr  # noqa: E402

OUT = vr.FIXTURES / "fresh"

# name -> (input H, W, C; layers: (kind, C_out, kernel, stride, groups)); Keras padding 'same', bias on, no
# activation. kind: conv | dw | fc. kernel and stride: an int (square) or an (H, W) pair, as Keras takes them.
# The functions below take another such dict (and fixture folder) too: scripts/vela_fresh2_layers.py. Chosen to differ from the fitted fixtures in channel counts (Vela's
# part-kernel traversal for shallow inputs), kernel size, map size (odd, small) and depth.
MODELS: dict[str, tuple[tuple[int, int, int], list[tuple[str, int, int, int, int]]]] = {
    "conv3x3_24to48_56": ((56, 56, 24), [("conv", 48, 3, 1, 1)]),
    "conv3x3_48to48_28": ((28, 28, 48), [("conv", 48, 3, 1, 1)]),
    "conv7x7s2_3to32_160": ((160, 160, 3), [("conv", 32, 7, 2, 1)]),
    "conv1x1_16to96_56": ((56, 56, 16), [("conv", 96, 1, 1, 1)]),
    "conv1x1_320to1280_7": ((7, 7, 320), [("conv", 1280, 1, 1, 1)]),
    "dw5x5_120_28": ((28, 28, 120), [("dw", 120, 5, 1, 1)]),
    "dw5x5s2_72_56": ((56, 56, 72), [("dw", 72, 5, 2, 1)]),
    "conv3x3_128to128_14": ((14, 14, 128), [("conv", 128, 3, 1, 1)]),
    "conv3x3_8to8_40": ((40, 40, 8), [("conv", 8, 3, 1, 1)]),
    "gconv3x3_32to32_g4_28": ((28, 28, 32), [("conv", 32, 3, 1, 4)]),
    "fc_512to10": ((1, 1, 512), [("fc", 10, 1, 1, 1)]),
    "conv3x3_40to40_17": ((17, 17, 40), [("conv", 40, 3, 1, 1)]),
    "chain_conv3x3_32to32_conv1x1_32to64_28": ((28, 28, 32), [("conv", 32, 3, 1, 1), ("conv", 64, 1, 1, 1)]),
}


def _hw(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def describe(name: str, models: dict = MODELS) -> str:
    (h, w, c), layers = models[name]
    parts = []
    for kind, cout, k, s, g in layers:
        if kind == "fc":
            parts.append(f"Dense({cout})")
        elif kind == "dw":
            parts.append(f"DepthwiseConv2D({k}, strides={s}, padding='same')")
        else:
            parts.append(
                f"Conv2D({cout}, {k}, strides={s}, padding='same'{', groups=%d' % g if g > 1 else ''})"
            )
    where = f"a {c}-vector" if models[name][1][0][0] == "fc" else f"{h}x{w}x{c}"
    return " -> ".join(parts) + f" on {where}"


def keras_model(name: str, models: dict = MODELS):
    import keras

    L = keras.layers
    (h, w, c), layers = models[name]
    keras.utils.set_random_seed(vr.SEED)
    x = keras.Input((c,) if layers[0][0] == "fc" else (h, w, c), batch_size=1, name="input")
    y = x
    for i, (kind, cout, k, s, g) in enumerate(layers):
        lname = name if len(layers) == 1 else f"{name}_{i}"
        if kind == "conv":
            y = L.Conv2D(cout, k, strides=s, padding="same", groups=g, name=lname)(y)
        elif kind == "dw":
            y = L.DepthwiseConv2D(k, strides=s, padding="same", name=lname)(y)
        else:
            y = L.Dense(cout, name=lname)(y)
    return keras.Model(x, y, name=name)


def vela_step(work: Path, only: list[str] | None, models: dict = MODELS, out: Path = OUT) -> None:
    versions = vr.tool_versions()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    ini = vr.layer_config(work)
    (out / vr.LAYER_INI).write_text(ini.read_text())
    vela_exe = str(Path(sys.executable).with_name("vela"))
    for name in only or models:
        tfl = work / f"{name}.tflite"
        vr.to_int8_tflite(keras_model(name, models), tfl)
        src_ops = vr.tflite_ops(tfl)
        args = [
            f"{name}.tflite",
            "--accelerator-config",
            vr.ACCELERATOR,
            "--config",
            vr.LAYER_INI,
            "--system-config",
            vr.LAYER_SYSTEM_CONFIG,
            "--memory-mode",
            vr.LAYER_MEMORY_MODE,
            "--verbose-performance",
            "--enable-debug-db",
        ]
        res = subprocess.run(
            [vela_exe, *args, "--output-dir", "regor"], check=False, cwd=work, capture_output=True, text=True
        )
        log = res.stdout + res.stderr
        (work / f"{name}_regor.log").write_text(log)
        assert res.returncode == 0, log[-2000:]
        assert re.search(rf"System configuration\s+{vr.LAYER_SYSTEM_CONFIG}\b", log), "system config not used"
        assert re.search(rf"Memory mode\s+{vr.LAYER_MEMORY_MODE}\b", log), "memory mode not used"
        ops = vr.regor_operators(vr.debug_tables(work / "regor" / f"{name}_debug.xml"), src_ops)
        summary = vr._first_row(work / "regor" / f"{name}_summary_{vr.LAYER_SYSTEM_CONFIG}.csv")
        assert float(summary["core_clock"]) == vr.LAYER_CORE_CLOCK, summary["core_clock"]
        total = sum(op["cycles"] for op in ops)
        assert total == int(float(summary["cycles_total"])), (total, summary["cycles_total"])
        with open(work / "regor" / f"{name}_per-layer.csv") as fh:  # Vela's own per-layer CSV
            per_layer = list(csv.DictReader(fh))
        npu_ops = [op for op in ops if "fused_into" not in op]
        assert all(op["type"] != "CPU" for op in npu_ops), "an operator fell back to the CPU"
        record = {
            "tool": f"ethos-u-vela {versions['ethos-u-vela']}",
            "versions": versions,
            "command": "vela " + " ".join(args) + " --output-dir regor",
            "accelerator": vr.ACCELERATOR,
            "compiler_core": "Regor (C++), Vela's default core",
            "system_config": vr.LAYER_SYSTEM_CONFIG,
            "memory_mode": vr.LAYER_MEMORY_MODE,
            "config_file": f"{vr.LAYER_INI} (beside this file): Vela's Ethos_U55_High_End_Embedded, "
            "core_clock 1e9",
            "core_clock_hz": float(summary["core_clock"]),
            **vr._memories_from(ini, vr.LAYER_SYSTEM_CONFIG, vr.LAYER_MEMORY_MODE),
            "model": {
                "name": name,
                "source": describe(name, models),
                "input": src_ops[0]["inputs"][0],
                "quantization": "full int8 (TFLiteConverter, representative dataset: "
                "8 uniform(-1,1) samples)",
                "tflite_ops": [{k: v for k, v in op.items() if k != "output_name"} for op in src_ops],
            },
            "operators": [vr._layer_row(op) for op in ops],
            "total_cycles": total,
            "total_macs": int(float(summary["nn_macs"])),
            "per_layer_csv_rows": len(per_layer),
        }
        (out / f"{name}.json").write_text(vr.dump_json(record))
        print(
            f"{name}: {total} cycles, {len(npu_ops)} NPU ops "
            f"({', '.join(op['type'] for op in npu_ops)}); per-layer CSV rows {len(per_layer)}"
        )


def first_per_tflite_op(vela_ops: list[dict]) -> list[dict]:
    """The first MAC operator Vela lowered each TFLite operator to (a grouped convolution becomes one Conv2D
    per group, each with the whole tensors' shapes and the same padding)."""
    seen, out = set(), []
    for op in vela_ops:
        if "fused_into" not in op and op.get("macs") and op["tflite_index"] not in seen:
            seen.add(op["tflite_index"])
            out.append(op)
    return out


def onnx_model(
    name: str, vela_ops: list[dict], models: dict = MODELS, producer: str = "vela_fresh_layers.py"
):
    """The ONNX twin: one Conv per Keras layer (a Dense as a 1x1 Conv on a 1x1 map), NCHW, with the padding
    Vela applied to the matching operator; weights and biases carry dims and no values."""
    import onnx
    from onnx import TensorProto, helper

    (h, w, c), layers = models[name]
    convs = first_per_tflite_op(vela_ops)
    assert len(convs) == len(layers), (name, [op["type"] for op in convs])
    nodes, inits = [], []
    x, cin = "input", c
    for i, ((kind, cout, k, s, g), op) in enumerate(zip(layers, convs)):
        group = cin if kind == "dw" else g
        pt, pb, pl, pr = op["kernel"]["padding_tblr"] if kind != "fc" else (0, 0, 0, 0)
        out = "output" if i == len(layers) - 1 else f"t{i}"
        wt, bt = onnx.TensorProto(), onnx.TensorProto()
        (kh, kw), (sh, sw) = _hw(k), _hw(s)
        for t, tname, dims in ((wt, f"w{i}", [cout, cin // group, kh, kw]), (bt, f"b{i}", [cout])):
            t.name, t.data_type = tname, TensorProto.FLOAT
            t.dims.extend(dims)
        inits += [wt, bt]
        lname = name if len(layers) == 1 else f"{name}_{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [out],
                name=lname,
                kernel_shape=[kh, kw],
                strides=[sh, sw],
                pads=[pt, pl, pb, pr],
                group=group,
            )
        )
        oh, ow = (1, 1) if kind == "fc" else (op["output"][1], op["output"][2])
        x, cin = out, cout
    ih, iw = (1, 1) if layers[0][0] == "fc" else (h, w)
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, ih, iw])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cin, oh, ow])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name=producer
    )
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return model, inferred


def onnx_step(models: dict = MODELS, out: Path = OUT, script: str = "vela_fresh_layers.py") -> None:
    import onnx

    for name in models:
        fixture = out / f"{name}.json"
        rec = json.loads(fixture.read_text())
        model, inferred = onnx_model(name, rec["operators"], models, script)
        shapes = {
            v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*inferred.graph.value_info, *inferred.graph.output)
        }
        convs = first_per_tflite_op(rec["operators"])
        for node, op in zip(model.graph.node, convs):
            n, c, h, w = shapes[node.output[0]]
            want = op["output"] if len(op["output"]) == 4 else [1, 1, 1, op["output"][-1]]
            assert [n, h, w, c] == want, (name, node.name, [n, h, w, c], want)
        path = out / f"{name}.onnx"
        onnx.save(model, str(path))
        rec["onnx"] = {
            "file": path.name,
            "made_with": f"onnx {onnx.__version__} helper (scripts/{script} onnx_model): "
            "one Conv per layer, NCHW, Vela's padding, weights and biases with dims and no values",
            "nodes": [nd.name for nd in model.graph.node],
        }
        fixture.write_text(vr.dump_json(rec))
        print(f"{name}: {path.stat().st_size} bytes")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    v = sub.add_parser("vela", help="TFLite models, Vela runs, JSON (TensorFlow+Vela env)")
    v.add_argument(
        "--work", type=Path, required=True, help="scratch folder for the .tflite files and Vela output"
    )
    v.add_argument("--only", nargs="*", choices=list(MODELS), help="make only these models (default: all)")
    sub.add_parser("onnx", help="ONNX twins (project env, needs onnx)")
    args = ap.parse_args(argv)
    if args.step == "vela":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        vela_step(args.work.resolve(), args.only)
    else:
        onnx_step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
