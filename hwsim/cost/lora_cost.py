"""What a LoRA adapter costs: its per-task storage and, applied on the fly, its low-rank branch.

LoRA (Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022, arXiv:2106.09685)
keeps, per adapted layer, ``A`` (r × in/groups × kh × kw) and ``B`` (out × r × 1 × 1), the shapes of
Hugging Face PEFT's ``lora.Conv2d`` (peft 0.21.2). A deployment can use it in two forms:

- **on the fly**: the shared layer runs unchanged and the branch ``B(A(x))`` runs beside it. ``A`` is a
  conv with the layer's kernel, stride and padding from ``in`` to ``r`` channels, ``B`` a 1×1 conv
  from ``r`` to ``out`` channels on the layer's output map (:func:`branch_layers`). The branch is
  charged as the issue that asked for it lists: its MACs (:func:`extra_macs`), its weights' traffic at
  the profile's weight precision (:func:`adapter_params`), and the ``r × P × Q`` activations written
  by ``A`` and read by ``B`` (:func:`intermediate_elems`). It is **fused** with its layer
  (:func:`branch_costs`): ``A`` reads the input tiles the shared layer has already fetched, so its
  input traffic is not charged again, and ``B`` accumulates into the shared layer's partial sums, so
  its output traffic is not either. Each branch conv goes through the same per-layer model as every
  layer (mapping search, tiling, refetches) and those two operands are then dropped; its latency is
  kept as costed alone (an upper bound). Run unfused, with ``A`` re-reading the input and ``B``
  writing its own output (the ``layer_cost`` of :func:`branch_layers` as they are), the branch costs
  far more, most of it the extra input and output traffic to DRAM.
- **folded**: at a task switch the adapter is merged into the weights, ``W + (alpha/r) · B A`` (r MACs
  per weight, PEFT's ``merge``), and inference then costs exactly the backbone. The merged weights
  are a full copy per task, like fine-tuning's (``hwsim.cost.mask_cost``: read W and the adapter, write the copy).

Per-task storage (both forms): ``r × (in/groups · kh · kw + out)`` weights per adapted layer at the
profile's weight precision.

Everything here is a pure function of a :class:`~hwsim.workload.layers.Layer` and a rank. A workload's ranks
come from its run's ``<layer>.lora_A.weight`` tensors (``rank = shape[0]``), see :func:`ranks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hwsim.cost.layer_cost import LayerCost, layer_cost
from hwsim.errors import InputError
from hwsim.workload.layers import Layer, Workload
from hwsim.hardware.profile import Profile

SUFFIX_A, SUFFIX_B = ".lora_A.weight", ".lora_B.weight"
ROLE_A, ROLE_B = "lora_A", "lora_B"


def adapter_params(layer: Layer, rank: int) -> int:
    """Weights of one layer's adapter: ``rank · (in/groups · kh · kw + out)`` (A plus B)."""
    kh, kw = layer.kernel_hw
    return rank * (layer.in_channels // layer.groups * kh * kw + layer.out_channels)


def adapter_bits(layer: Layer, rank: int, weight_bits: int) -> int:
    """Per-task storage of one layer's adapter at ``weight_bits`` per weight."""
    return adapter_params(layer, rank) * weight_bits


def branch_layers(layer: Layer, rank: int) -> tuple[Layer, Layer]:
    """The branch of ``layer`` as two layers: ``A`` (the layer's geometry, ``rank`` outputs) and ``B``
    (1×1, ``rank`` → the layer's outputs, on its output map). Grouped layers are not adapted."""
    if layer.groups != 1:
        raise InputError(f"layer {layer.name!r}: LoRA adapters on grouped convs (groups {layer.groups}) are "
                         f"not modelled (ksm-train leaves them out)")
    a = Layer(name=f"{layer.name}.lora_A", kind=layer.kind, in_channels=layer.in_channels, out_channels=rank,
              kernel_hw=layer.kernel_hw, stride_hw=layer.stride_hw, padding_hw=layer.padding_hw, groups=1,
              input_hw=layer.input_hw, output_hw=layer.output_hw)
    b = Layer(name=f"{layer.name}.lora_B", kind=layer.kind, in_channels=rank, out_channels=layer.out_channels,
              kernel_hw=(1, 1), input_hw=layer.output_hw, output_hw=layer.output_hw)
    return a, b


def extra_macs(layer: Layer, rank: int) -> int:
    """MACs the branch adds per inference: ``P·Q · rank · (in/groups · kh · kw + out)``."""
    p, q = layer.output_hw
    return p * q * adapter_params(layer, rank)


def intermediate_elems(layer: Layer, rank: int) -> int:
    """Activations between the two low-rank convs: ``rank · P · Q`` (written by A, read by B)."""
    p, q = layer.output_hw
    return rank * p * q


def ranks(work: Workload) -> dict[str, int]:
    """Layer name -> rank of every adapter of a run (from its ``lora_A``/``lora_B`` tensors), checked
    against the layers: ``InputError`` names the tensor that disagrees."""
    layers = {layer.name: layer for layer in work.layers}
    out: dict[str, int] = {}
    b_shapes: dict[str, tuple[int, ...]] = {}
    for t in work.tensors:
        if t.role not in (ROLE_A, ROLE_B):
            continue
        suffix = SUFFIX_A if t.role == ROLE_A else SUFFIX_B
        if not t.key.endswith(suffix) or t.key[: -len(suffix)] not in layers:
            raise InputError(f"{work.source}: {t.key}: a {t.role} tensor must be named <layer>{suffix} of a layer "
                             f"in run.json layers")
        layer = layers[t.key[: -len(suffix)]]
        if t.role == ROLE_A:
            expected_tail = layer.weight_shape[1:]
            if len(t.shape) != len(layer.weight_shape) or t.shape[1:] != expected_tail or t.shape[0] < 1:
                raise InputError(f"{work.source}: {t.key}: shape {list(t.shape)} is not [rank, "
                                 f"{', '.join(map(str, expected_tail))}] for layer {layer.name!r}")
            out[layer.name] = t.shape[0]
        else:
            b_shapes[layer.name] = t.shape
    for name, shape in b_shapes.items():
        layer = layers[name]
        rank = out.get(name)
        expected = (layer.out_channels, rank, *((1, 1) if layer.kind == "conv" else ()))
        if rank is None or shape != expected:
            raise InputError(f"{work.source}: {name}{SUFFIX_B}: shape {list(shape)} is not {list(expected)} "
                             f"(its lora_A gives rank {rank})")
    return out


def branches(work: Workload, rank_of: Mapping[str, int] | None = None) -> tuple[Layer, ...]:
    """Every adapted layer's branch, in layer order (A then B), for the on-the-fly cost."""
    rank_of = ranks(work) if rank_of is None else rank_of
    out: list[Layer] = []
    for layer in work.layers:
        if layer.name in rank_of:
            out += branch_layers(layer, rank_of[layer.name])
    return tuple(out)


def fused(cost: LayerCost, drop: str) -> LayerCost:
    """``cost`` without one operand's traffic and energy (``inputs`` for A, ``outputs`` for B: shared
    with the adapted layer). Its latency stays that of the branch conv costed alone, stalls and
    on/off-loading of the dropped operand included: an upper bound, since the mapping search costs
    a layer's latency as a whole (``hwsim.cost.mapping``)."""
    return dataclasses.replace(
        cost,
        read_bytes={k: v for k, v in cost.read_bytes.items() if k[1] != drop},
        write_bytes={k: v for k, v in cost.write_bytes.items() if k[1] != drop},
        energy_pj={k: v for k, v in cost.energy_pj.items() if k[1] != drop})


def branch_costs(work: Workload, profile: Profile, batch: int = 1, objective: str = "energy") -> tuple[LayerCost, ...]:
    """The on-the-fly cost of every adapter's branch, fused with its layer (module docstring): per
    adapted layer, A without its input traffic, then B without its output traffic, each under its own
    best mapping for ``objective``."""
    out: list[LayerCost] = []
    for a, b in zip(*[iter(branches(work))] * 2):
        out += [fused(layer_cost(a, profile, batch=batch, objective=objective), "inputs"),
                fused(layer_cost(b, profile, batch=batch, objective=objective), "outputs")]
    return tuple(out)
