"""The run folder's record ``run.json`` (``ksm-run/1``) and the bundled network tables (``ksm-layers/1``).

Both share :class:`LayerRecord`, one conv or linear layer by its geometry (the packed task header uses it
too). ``ksm`` validates a record with :class:`RunRecord` before it writes it, and every reader (``ksm-sim``,
the report, ``ksm-export``, ``ksm-train --resume``) validates it after reading, so a writer bug is caught
when the file is written, not when it is read.

Strictness: a record whose keys are all ``ksm``'s (a layer, the backbone, ``files``, ``sequence``,
``metrics.int8``, ``lora``, ``cpg``) refuses an unknown key; the top level, ``metrics``, ``dataset`` and
``train`` keep unknown keys (:class:`OpenRecord`), each for the reason given at its class. The checks of
the tensors themselves (shapes against the layers, a binary mask against its real mask, the sha256 of the
file) need ``masks.safetensors`` and live in :mod:`hwsim.workload.runcheck` and
:func:`hwsim.workload.layers.load_run`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from hwsim import catalogue
from hwsim.fileio.bounded import MAX_SIZE, is_fraction, short
from hwsim.schemas.graph_record import GraphRecord, check_graph_layers
from hwsim.schemas.validation import OpenRecord, Real, Record, Whole, as_tuple, first_repeat

RUN_FORMAT = "ksm-run"
LAYERS_FORMAT = "ksm-layers"
MASKS = "masks.safetensors"
# The roles of docs/run-folder.md, and the key each role's tensor has: ``<layer>.<suffix>``.
LAYER_SUFFIXES: dict[str, tuple[str, ...]] = {
    "mask": ("mask",), "binary": ("binary",), "scale": ("scale",), "pick": ("pick",),
    "weight": ("weight", "bias"), "head": ("weight", "bias"),
    "lora_A": ("lora_A.weight",), "lora_B": ("lora_B.weight",),
}
BATCHNORM_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
Role = Literal["mask", "binary", "scale", "batchnorm", "head", "weight", "lora_A", "lora_B", "pick"]
MAX_TASKS = 255  # a sequence's task index is a uint8 in the shared file; 0 means free
MAX_IMAGE_SIDE = 16384  # pixels: above any classifier's input (ImageNet models take <= 600 px)
MAX_COUNT = 10 ** 12  # images, weights, parameters: a thousand times the largest CNN's weights


# ---------------------------------------------------------------------------------------------
# Field types


def Pair(ge: int, description: str, le: int = MAX_SIZE) -> Any:  # noqa: N802 - a type
    """Two whole numbers ``[height, width]`` in ``ge..le`` (a feature map, a kernel, a stride)."""
    size = Whole(ge=ge, le=le)
    return Annotated[tuple[size, size], BeforeValidator(as_tuple), Field(description=description or None)]


def _accuracy(value: Any) -> Any:
    """One message for every wrong accuracy (a string, NaN, Infinity, 1.5, true): it is printed beside
    the costs, so it must be a fraction."""
    if not is_fraction(value):
        raise ValueError("must be a fraction in [0, 1]")
    return float(value)


MeasuredFraction = Annotated[float, BeforeValidator(_accuracy), Field(ge=0, le=1)]


def Accuracy(description: str) -> Any:  # noqa: N802 - a type
    """A measured accuracy or density: a fraction in [0, 1], or null when not measured."""
    return Annotated[MeasuredFraction | None, Field(default=None, description=description)]


def _format(name: str) -> Any:
    """``"<name>/1"`` or a minor version of it (``"<name>/1.3"``): a reader refuses a major version it does not know."""
    pattern = re.compile(rf"{re.escape(name)}/1(\.\d+)?")

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"unknown format (this reader takes '{name}/1' and its minor versions)")
        return value

    return Annotated[str, AfterValidator(check), Field(description=f"`\"{name}/1\"` (a minor version "
                                                                   f"`\"{name}/1.x\"` is read too)")]


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be a sha256: 64 lower-case hex digits")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256), Field(description="a sha256, 64 lower-case hex digits")]
Name = Annotated[str, Field(min_length=1, max_length=1000)]


# ---------------------------------------------------------------------------------------------
# Layers


# The mask hyperparameters' bound (init, threshold, beta, temperature): the published values are 1e-2, 5e-3, 1200
# and 100 (docs/bibliography.md, [KSM] and [Piggyback]); beyond a million the float32 mask overflows in training.
MASK_BOUND = 1e6

class LayerRecord(Record):
    """One conv or linear layer by its geometry (dilation 1), in execution order. A linear layer has a 1x1
    kernel, stride 1, no padding and one group; in a run or a bundled network its feature maps are 1x1."""

    RULES: ClassVar[tuple[str, ...]] = (
        "`groups` divides `in_channels` and `out_channels`.",
        "`output_hw` = (`input_hw` + 2 `padding` - `kernel`) // `stride` + 1 on each axis.",
        "A `linear` layer has `kernel` [1, 1], `stride` [1, 1], `padding` [0, 0] and `groups` 1.",
    )

    # MAX_SIZE (2**20) bounds every size: no CNN has a million channels or a million-pixel feature map, and a
    # typo of 1e12 must be refused before the cost model multiplies it.
    name: Name = Field(description="the layer's module name, unique in the network (tensor keys start with it)")
    kind: Literal["conv", "linear"] = Field(description="a 2-D convolution or a fully connected layer")
    in_channels: Whole(ge=1, le=MAX_SIZE, description="input channels (input features of a linear layer)")
    out_channels: Whole(ge=1, le=MAX_SIZE, description="output channels (output features of a linear layer)")
    kernel: Pair(1, "kernel [height, width] in pixels")
    stride: Pair(1, "stride [height, width] in pixels")
    padding: Pair(0, "zero padding [height, width] in pixels, on each side")
    groups: Whole(ge=1, le=MAX_SIZE, description="channel groups (1: dense; in_channels: depthwise)")
    input_hw: Pair(1, "input feature map [height, width] in pixels")
    output_hw: Pair(1, "output feature map [height, width] in pixels")
    bias: bool = Field(default=False, description="whether the layer adds a bias per output channel")

    @field_validator("groups")
    @classmethod
    def _groups_divide(cls, groups: int, info: ValidationInfo) -> int:
        channels = [info.data[key] for key in ("in_channels", "out_channels") if key in info.data]
        if any(c % groups for c in channels):
            raise ValueError(f"does not divide in_channels and out_channels {channels}")
        return groups

    @field_validator("output_hw")
    @classmethod
    def _output_follows(cls, output_hw: tuple[int, int], info: ValidationInfo) -> tuple[int, int]:
        if not {"input_hw", "kernel", "stride", "padding"} <= set(info.data):
            return output_hw  # one of them was refused already
        d = info.data
        expected = [(d["input_hw"][a] + 2 * d["padding"][a] - d["kernel"][a]) // d["stride"][a] + 1
                    if d["input_hw"][a] + 2 * d["padding"][a] >= d["kernel"][a] else 0 for a in (0, 1)]
        if list(output_hw) != expected:
            raise ValueError(f"disagrees with input_hw {list(d['input_hw'])}, kernel {list(d['kernel'])}, stride "
                             f"{list(d['stride'])} and padding {list(d['padding'])} (expected {expected})")
        return output_hw

    @model_validator(mode="after")
    def _linear(self) -> LayerRecord:
        if self.kind == "linear" and (self.kernel, self.stride, self.padding, self.groups) != ((1, 1), (1, 1),
                                                                                                (0, 0), 1):
            raise ValueError(f"{self.name!r}: a linear layer has kernel [1, 1], stride [1, 1], padding [0, 0] and "
                             f"groups 1")
        return self

    @property
    def weights(self) -> int:
        """How many weights the layer has (its weight tensor's elements)."""
        return self.out_channels * (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1]


def check_layer_names(layers: tuple[LayerRecord, ...] | list[LayerRecord]) -> None:
    """Layer names key tensors, costs and exported mappings: each appears once."""
    i = first_repeat([layer.name for layer in layers])
    if i is not None:
        raise ValueError(f"layers[{i}].name: {short(layers[i].name)} is used twice (names key the layers' tensors "
                         f"and costs)")


Layers = Annotated[list[LayerRecord], Field(min_length=1, description="one record per conv or linear layer, "
                                                                        "in execution order")]


class LayerTable(Record):
    """A ``layers`` list alone (what :func:`hwsim.workload.layers.layers_from_records` reads)."""

    RULES: ClassVar[tuple[str, ...]] = ("Layer names are unique.",)

    layers: Layers

    @model_validator(mode="after")
    def _names(self) -> LayerTable:
        check_layer_names(self.layers)
        return self


class NetworkTable(OpenRecord):
    """A network as a layer table (``hwsim/networks/<name>.json``, written by ``ksm/network/bundle_networks.py``
    or by hand). Unlisted keys are provenance notes and kept: they change no cost."""

    RULES: ClassVar[tuple[str, ...]] = (
        "Layer names are unique.",
        "`input_hw` is the first layer's `input_hw`.",
        *GraphRecord.RULES,
    )

    format: _format(LAYERS_FORMAT)
    network: Name | None = Field(default=None, description="the network's name (default: the file's stem)")
    source: str | None = Field(default=None, description="where the geometry comes from (paper, table)")
    torchvision_builder: str | None = Field(default=None, description="the torchvision builder it was traced from")
    input_hw: Pair(1, "", le=MAX_IMAGE_SIDE) | None = Field(default=None, description="the image [height, width] "
                                                                                   "in pixels")
    layers: Layers
    graph: GraphRecord | None = Field(default=None, description="the network's operators and tensors "
                                                                "(absent: the layers are costed as a chain)")

    @model_validator(mode="after")
    def _consistent(self) -> NetworkTable:
        check_layer_names(self.layers)
        if self.graph is not None:
            check_graph_layers(self.graph, self.layers)
        if self.input_hw is not None and self.input_hw != self.layers[0].input_hw:
            raise ValueError(f"input_hw: {list(self.input_hw)} is not the first layer's input_hw "
                             f"{list(self.layers[0].input_hw)}")
        return self


# ---------------------------------------------------------------------------------------------
# run.json's parts


class Backbone(Record):
    """The pretrained backbone a task was learned on (all of its keys are ksm's: an unknown one is refused)."""

    arch: Name = Field(description="torchvision architecture, e.g. `mobilenet_v2`")
    weights: str | None = Field(default=None, description="torchvision weights name or .pth path; null: random init")
    sha256: Sha256 | None = Field(default=None, description="sha256 of the weights file; null when none was read")


class Dataset(OpenRecord):
    """The task's data. Open: each dataset reader records its own provenance (split seed, augmentation,
    ``ksm-compare``'s validation split); the keys readers use are checked."""

    name: Name = Field(description="the task's data, e.g. `fashion_mnist`")
    num_classes: Whole(ge=1, le=MAX_SIZE) | None = Field(default=None, description="classes: the head's outputs")
    input_size: Pair(1, "", le=MAX_IMAGE_SIDE) | None = Field(
        default=None, description="image [height, width] in pixels the task was trained at")
    train_size: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="training images used")
    test_size: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="test images")
    val_size: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="validation images held out "
                                                                                   "(ksm-compare)")
    max_train: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="cap on training images (0: none)")
    source: str | None = Field(default=None, description="where the data was read from")


class HistoryEntry(OpenRecord):
    """One epoch of training. Open: each phase of a method (PackNet's retrain, CPG's pick) adds its own notes."""

    epoch: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="the epoch, from 1")
    loss: Real() | None = Field(default=None, description="mean training loss (any finite value: training stops "
                                                          "on a non-finite one)")
    train_top1: Accuracy("training top-1 of the epoch")
    val_top1: Accuracy("validation top-1 of the epoch (ksm-compare)")
    test_top1: Accuracy("test top-1 of the epoch")
    seconds: Real(ge=0, le=1e9) | None = Field(default=None, description="wall time of the epoch in seconds")
    phase: str | None = Field(default=None, description="`train`, `retrain` (PackNet), `pick`, `compact <ratio>` (CPG)")


class Int8Metrics(Record):
    """What ``ksm-export --int8`` measured (every key is ksm's: an unknown one is refused)."""

    top1: Accuracy("test top-1 of the task at int8 (the folded form)")
    folded_top1: Accuracy("test top-1 of the folded int8 model")
    on_the_fly_top1: Accuracy("test top-1 with the shared int8 backbone times the mask, applied on the fly")
    on_the_fly_weights_only_top1: Accuracy("the same with int8 weights and float activations")
    cpu_kernels_top1: Accuracy("test top-1 with onnxruntime's fused integer kernels on this CPU")
    float_top1: Accuracy("test top-1 in float32 (the run's metrics.top1)")
    float_onnx_top1: Accuracy("test top-1 of the float ONNX export")
    precision: Literal["int8"] | None = Field(default=None, description="the datapath precision measured")
    weight_bits: Whole(ge=1, le=64) | None = Field(default=None, description="weight bits of the folded form")
    activation_bits: Whole(ge=1, le=64) | None = Field(default=None, description="activation bits")
    on_the_fly_weight_bits: Whole(ge=1, le=64) | None = Field(default=None, description="weight bits on the fly")
    mask_scale_bits: Whole(ge=0, le=64) | None = Field(default=None, description="bits of KSM's soft part")
    form: str | None = Field(default=None, description="the form `top1` measures: `folded`")
    evaluation: str | None = Field(default=None, description="how accuracy was measured")
    profile: str | None = Field(default=None, description="the profile whose weight precision was used")
    weights: str | None = Field(default=None, description="the weight quantisation scheme")
    activations: str | None = Field(default=None, description="the activation quantisation scheme")
    calibration_images: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="calibration images")
    calibration_split: str | None = Field(default=None, description="the split calibrated on")
    calibration_method: str | None = Field(default=None, description="onnxruntime's calibration method")
    calibration_seed: Whole(ge=-(2 ** 63), le=2 ** 64 - 1) | None = Field(default=None, description="its seed")
    test_size: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="test images measured")
    library: str | None = Field(default=None, description="onnx/onnxruntime versions")
    onnx_opset: Whole(ge=1, le=1000) | None = Field(default=None, description="the ONNX opset exported")
    onnx_rel_diff: Real(ge=0, le=1e6) | None = Field(default=None, description="largest relative difference "
                                                                                "ONNX vs PyTorch")


SoftBits = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]?)$", description="bits of the soft part, 0..99")]


class Metrics(OpenRecord):
    """What training measured. Open: a method records its own measurements (PackNet's ``top1_before_prune``),
    ``ksm-compare`` its selection (``selection``, free-form: the protocol as it ran)."""

    top1: Accuracy("test top-1 (a fraction)")
    mask_density: Accuracy("fraction of the mask's binary entries that are 1; null without a binary mask")
    val_top1: Accuracy("validation top-1 of the chosen trial at its chosen epoch (ksm-compare)")
    history: list[HistoryEntry] = Field(default_factory=list, description="one entry per epoch")
    soft_precision: dict[SoftBits, MeasuredFraction] = Field(
        default_factory=dict, description="bits of KSM's soft part -> test top-1 with it quantised to them")
    int8: Int8Metrics | None = Field(default=None, description="what `ksm-export --int8` measured")
    selection: dict[str, Any] | None = Field(default=None, description="ksm-compare's protocol, trials and choice")


class Train(OpenRecord):
    """Every setting that shaped the training. Open: it holds every hyperparameter, and a method's own options
    (a sequence's ``prune_ratio``); the ones readers act on are typed."""

    # the mask settings are bounded as ksm-train bounds them (|value| <= MASK_BOUND; beta and T positive): the
    # real mask is float32, and beta * mask / T must stay far inside its range (a record ksm wrote reads back)
    mask_threshold: Real(ge=-MASK_BOUND, le=MASK_BOUND) | None = Field(
        default=None, description="binarisation threshold of the real mask")
    mask_init: Real(ge=-MASK_BOUND, le=MASK_BOUND) | None = Field(default=None, description="initial real mask value")
    mask_beta: Real(gt=0, le=MASK_BOUND) | None = Field(default=None, description="logistic scale of a soft part")
    mask_temperature: Real(gt=0, le=MASK_BOUND) | None = Field(
        default=None, description="temperature of a soft part's logistic")
    soft: bool | None = Field(default=None, description="KSM: false for a binary-only mask; null for other methods")
    lr_body: Real(ge=0, le=1e3) | None = Field(default=None, description="learning rate of the backbone's "
                                                                         "learned part")
    lr_head: Real(ge=0, le=1e3) | None = Field(default=None, description="learning rate of the head")
    epochs: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="epochs per task")
    batch_size: Whole(ge=1, le=MAX_COUNT) | None = Field(default=None, description="images per step")
    seed: Whole(ge=-(2 ** 63), le=2 ** 64 - 1) | None = Field(default=None, description="the run's seed")
    prune_ratio: Real(ge=0, le=1) | None = Field(default=None, description="PackNet/CPG: fraction of weights "
                                                                           "pruned per task")
    wall_seconds: Real(ge=0, le=1e9) | None = Field(default=None, description="training wall time in seconds")
    versions: dict[str, str] | None = Field(default=None, description="torch, torchvision, ksm, python versions")


class FileEntry(Record):
    """A tensor file of the run."""

    sha256: Sha256


class SequenceCounts(Record):
    """Whose weights one layer holds after this task (counts of weights, at the task's geometry)."""

    RULES: ClassVar[tuple[str, ...]] = ("`picked` is at most `earlier`.",)

    own: Whole(ge=0, le=MAX_COUNT) = Field(description="weights owned by this task")
    earlier: Whole(ge=0, le=MAX_COUNT) = Field(description="weights owned by earlier tasks")
    picked: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="of those, the ones this task uses")
    free: Whole(ge=0, le=MAX_COUNT) = Field(description="weights free after this task")
    grown: Whole(ge=0, le=MAX_COUNT) = Field(description="weights this task's growth added (CPG)")

    @field_validator("picked")
    @classmethod
    def _picked(cls, picked: int | None, info: ValidationInfo) -> int | None:
        earlier = info.data.get("earlier")
        if picked is not None and earlier is not None and picked > earlier:
            raise ValueError(f"more than the {earlier} weights of earlier tasks")
        return picked


class Sequence(Record):
    """A PackNet/CPG task's place in its sequence (every key is ksm's: an unknown one is refused)."""

    RULES: ClassVar[tuple[str, ...]] = (
        "The tasks are distinct; `position` is in 1..len(`tasks`).",
        "`index_bits` is ceil(log2(len(`tasks`) + 1)).",
    )

    tasks: list[Name] = Field(min_length=1, max_length=MAX_TASKS, description="every task of the sequence, in order")
    position: Whole(ge=1, le=MAX_TASKS) = Field(description="1-based position of the task in the sequence")
    shared: str = Field(pattern=r"^(\.\./)?[A-Za-z0-9_.-]+\.safetensors$",
                        description="the shared weights file, relative to the task folder (`../shared.safetensors`)")
    shared_sha256: Sha256 | None = Field(default=None, description="sha256 of the shared file as this task left it")
    view_sha256: Sha256 | None = Field(default=None, description="sha256 of the weights this task uses")
    index_bits: Whole(ge=1, le=8) | None = Field(default=None, description="width of the task index per weight")
    settings: dict[str, Any] | None = Field(
        default=None, description="the options a resumed sequence must repeat (compared whole, never interpreted)")
    weights: dict[Name, SequenceCounts] = Field(default_factory=dict, description="per layer: whose weights it holds")

    @field_validator("tasks")
    @classmethod
    def _distinct(cls, tasks: list[str]) -> list[str]:
        i = first_repeat(tasks)
        if i is not None:
            raise ValueError(f"task {short(tasks[i])} appears twice")
        return tasks

    @field_validator("position")
    @classmethod
    def _in_sequence(cls, position: int, info: ValidationInfo) -> int:
        tasks = info.data.get("tasks")
        if tasks is not None and position > len(tasks):
            raise ValueError(f"past the {len(tasks)} tasks of the sequence")
        return position

    @field_validator("index_bits")
    @classmethod
    def _index_width(cls, bits: int | None, info: ValidationInfo) -> int | None:
        tasks = info.data.get("tasks")
        if bits is not None and tasks is not None and bits != math.ceil(math.log2(len(tasks) + 1)):
            raise ValueError(f"{len(tasks)} tasks need {math.ceil(math.log2(len(tasks) + 1))} bits")
        return bits


class Lora(Record):
    """LoRA's adapters (every key is ksm's: an unknown one is refused)."""

    RULES: ClassVar[tuple[str, ...]] = ("`scaling` is `alpha` / `rank`.",)

    rank: Whole(ge=1, le=MAX_SIZE) = Field(description="adapter rank r")
    # 1e6: scaling multiplies the adapter's product into the weights; a larger one is a typo, not a setting
    alpha: Real(gt=0, le=1e6, description="LoRA alpha")
    scaling: Real(gt=0, le=1e6, description="alpha / rank, the adapter's factor")
    dropout: Real(ge=0, lt=1, description="dropout on the adapter's input")
    targets: list[str] = Field(description="which layers were chosen")
    layers: dict[Name, Whole(ge=1, le=MAX_SIZE)] = Field(description="adapted layer -> rank")
    left_out: list[Name] = Field(default_factory=list, description="layers not adapted (grouped convs)")
    left_out_why: str | None = Field(default=None, description="why they were left out")
    parameters: Whole(ge=0, le=MAX_COUNT) | None = Field(default=None, description="adapter weights in all")
    key_format: str | None = Field(default=None, description="how the keys map to PEFT's")

    @field_validator("scaling")
    @classmethod
    def _scaling(cls, scaling: float, info: ValidationInfo) -> float:
        rank, alpha = info.data.get("rank"), info.data.get("alpha")
        if rank is not None and alpha is not None and not math.isclose(scaling, alpha / rank, rel_tol=1e-6):
            raise ValueError(f"is not alpha / rank = {alpha / rank:g}")
        return scaling


class Cpg(Record):
    """CPG's growth (every key is ksm's: an unknown one is refused)."""

    # 1024: MobileNetV2 widened 1024 times has ~1.3M channels in its last layer, past MAX_SIZE already
    width_mult: Real(gt=0, le=1024, description="MobileNetV2 width multiplier the task was learned at")
    grow_steps: Whole(ge=0, le=MAX_COUNT) = Field(description="times the network was widened")
    grown_weights: Whole(ge=0, le=MAX_COUNT) = Field(description="weights the growth added")
    target_accuracy: Accuracy("the accuracy that stops growth")


# ---------------------------------------------------------------------------------------------
# run.json


def _catalogue_method(name: str) -> str:
    """Looked up when a record is read, so a method registered at run time (a plug-in) is known."""
    if catalogue.find(name) is None:
        raise ValueError(f"unknown method (known: {', '.join(catalogue.names())})")
    return name


def _roles_rule() -> str:
    """The rule on ``tensors``' roles, with each built-in mask kind's roles read from the catalogue."""
    kinds = {t.mask.name: t.mask for t in catalogue.methods()}
    listed = ", ".join(f"`{name}` {'/'.join(k.roles) or 'nothing'}"
                       + (f" (always {'/'.join(k.required)})" if k.required else "") for name, k in kinds.items())
    return (f"The roles in `tensors` are those the method stores: its mask kind's (`MaskKind.roles` in "
            f"`hwsim/catalogue.py`: {listed}), `head` (always), and `batchnorm` only when `batchnorm` is `task`.")


class RunRecord(OpenRecord):
    """A run folder's ``run.json`` (docs/run-folder.md). Open at the top level: the format promises that
    readers ignore keys they do not know (a later minor version adds keys); every key ksm writes is checked."""

    RULES: ClassVar[tuple[str, ...]] = (
        "`method` is a method of the catalogue (`hwsim/catalogue.py`).",
        "Layer names are unique.",
        "A tensor of a layer's role (`mask`, `binary`, `scale`, `pick`, `weight`, `head`, `lora_A`, `lora_B`) "
        "is named `<layer>.<suffix>` of a layer in `layers`; a `batchnorm` tensor ends in `.weight`, `.bias`, "
        "`.running_mean` or `.running_var`.",
        _roles_rule(),
        "`sequence` is given exactly when the method learns its tasks in a sequence ("
        + ", ".join(f"`{t.name}`" for t in catalogue.methods() if t.sequence) + ").",
        "A layer's own weights (role `weight` or `head`) include `<layer>.bias` exactly when the layer's `bias` "
        "is true.",
        "`files` names `masks.safetensors`.",
        "`dataset.num_classes` is the head's (the last linear layer's) `out_channels`.",
        "`dataset.input_size` is the first layer's `input_hw`.",
        "`sequence.weights` names layers in `layers`, with counts within the layer's weights.",
        "`lora.layers` names layers in `layers`.",
    )

    format: _format(RUN_FORMAT)
    task: Name = Field(description="the task, e.g. `fashion_mnist`")
    method: Annotated[Name, AfterValidator(_catalogue_method)] = Field(description="a method of the catalogue: `ksm`, `piggyback`, `finetune`, `feature`, "
                                     "`lora`, `packnet`, `cpg`, or a registered one")
    method_options: dict[str, Any] | None = Field(
        default=None, description="the method's own options (LoRA's rank); its class checks them when rebuilt")
    backbone: Backbone
    batchnorm: Literal["task", "frozen"] = Field(
        default="task", description="`task`: BatchNorm stored per task; `frozen`: the backbone's")
    dataset: Dataset
    metrics: Metrics = Field(default_factory=Metrics, description="what training measured")
    train: Train = Field(default_factory=Train, description="every setting that shaped the training")
    layers: Layers
    tensors: dict[Name, Role] = Field(description="key in masks.safetensors -> its role (docs/run-folder.md)")
    files: dict[Name, FileEntry] | None = Field(
        default=None, description="tensor file -> its sha256; absent in runs written before it existed")
    sequence: Sequence | None = Field(default=None, description="PackNet/CPG: the task's place in its sequence")
    lora: Lora | None = Field(default=None, description="LoRA: its adapters")
    cpg: Cpg | None = Field(default=None, description="CPG: its growth")

    @model_validator(mode="after")
    def _consistent(self) -> RunRecord:
        check_layer_names(self.layers)
        by_name = {layer.name: layer for layer in self.layers}
        for key, role in self.tensors.items():
            _check_tensor_key(key, role, by_name)
        self._check_roles()
        self._check_biases(by_name)
        if self.files is not None and MASKS not in self.files:
            raise ValueError(f"files.{MASKS}: missing key")
        self._check_dataset()
        if self.sequence is not None:
            for name, counts in self.sequence.weights.items():
                layer = by_name.get(name)
                if layer is None:
                    raise ValueError(f"sequence.weights.{name}: no such layer in layers")
                for key in ("own", "earlier", "picked", "free", "grown"):
                    value = getattr(counts, key)
                    if value is not None and value > layer.weights:
                        raise ValueError(f"sequence.weights.{name}.{key}: {value} is more than the layer's "
                                         f"{layer.weights} weights")
        if self.lora is not None:
            unknown = [name for name in [*self.lora.layers, *self.lora.left_out] if name not in by_name]
            if unknown:
                raise ValueError(f"lora.layers: {short(unknown[0])} is not a layer in layers")
        return self

    def _check_roles(self) -> None:
        """The tensors' roles and ``sequence`` are the method's (its catalogue row): a ``method`` swapped for
        another is refused here, never costed, packed or exported as the other method."""
        traits = catalogue.get(self.method)
        kind = traits.mask
        stored = {*kind.roles, *catalogue.ALWAYS_STORED}
        for key, role in self.tensors.items():
            if role == catalogue.TASK_BATCHNORM and self.batchnorm != "task":
                raise ValueError(f"tensors.{key}: a {role!r} tensor, but batchnorm is {self.batchnorm!r} (the "
                                 f"backbone's BatchNorm, stored with no task)")
            if role != catalogue.TASK_BATCHNORM and role not in stored:
                raise ValueError(f"tensors.{key}: method {self.method!r} stores no {role!r} tensor (its mask kind "
                                 f"{kind.name!r} stores {', '.join(sorted(stored))}; BatchNorm with batchnorm "
                                 f"'task')")
        present = set(self.tensors.values())
        missing = [role for role in (*kind.required, *catalogue.ALWAYS_STORED) if role not in present]
        if missing:
            raise ValueError(f"tensors: no {missing[0]!r} tensor, which method {self.method!r} stores for every "
                             f"task (mask kind {kind.name!r})")
        if traits.sequence and self.sequence is None:
            raise ValueError(f"sequence: missing key (method {self.method!r} learns its tasks in a sequence on "
                             f"shared weights)")
        if not traits.sequence and self.sequence is not None:
            sequential = ", ".join(t.name for t in catalogue.methods() if t.sequence)
            raise ValueError(f"sequence: method {self.method!r} does not learn its tasks in a sequence (only "
                             f"{sequential} do)")

    def _check_biases(self, layers: dict[str, LayerRecord]) -> None:
        """A layer stored whole (fine-tuning's weights, every head) stores its bias exactly when it has one."""
        own = ("weight", "head")
        for key, role in self.tensors.items():
            base, _, suffix = key.rpartition(".")
            if role not in own or suffix != "weight":
                continue
            has_bias = self.tensors.get(f"{base}.bias") in own
            if has_bias != layers[base].bias:
                index = next(i for i, layer in enumerate(self.layers) if layer.name == base)
                raise ValueError(f"layers[{index}].bias: {str(layers[base].bias).lower()}, but tensors "
                                 f"{'holds' if has_bias else 'holds no'} {short(base + '.bias')}")
        for key, role in self.tensors.items():
            base, _, suffix = key.rpartition(".")
            if role in own and suffix == "bias" and self.tensors.get(f"{base}.weight") != role:
                raise ValueError(f"tensors.{key}: a bias without its layer's {short(base + '.weight')}")

    def _check_dataset(self) -> None:
        classes, size = self.dataset.num_classes, self.dataset.input_size
        heads = [layer for layer in self.layers if layer.kind == "linear"]
        if classes is not None and heads and heads[-1].out_channels != classes:
            raise ValueError(f"dataset.num_classes is {classes} but the stored head has {heads[-1].out_channels} "
                             f"outputs (layers: {short(heads[-1].name)}, the last linear layer)")
        if size is not None and size != self.layers[0].input_hw:
            raise ValueError(f"dataset.input_size: {list(size)} is not the first layer's input_hw "
                             f"{list(self.layers[0].input_hw)}")


def _check_tensor_key(key: str, role: str, layers: dict[str, LayerRecord]) -> None:
    """A tensor of a layer's role is ``<layer>.<suffix>`` of a layer in ``layers``."""
    if role == "batchnorm":
        if key.rpartition(".")[2] not in BATCHNORM_SUFFIXES:
            raise ValueError(f"tensors.{key}: a batchnorm tensor ends in "
                             f"{', '.join('.' + s for s in BATCHNORM_SUFFIXES)}")
        return
    for suffix in LAYER_SUFFIXES[role]:
        if key.endswith("." + suffix):
            base = key[: -len(suffix) - 1]
            if base not in layers:
                raise ValueError(f"tensors.{key}: no layer {short(base)} in layers (role {role!r})")
            return
    raise ValueError(f"tensors.{key}: a {role!r} tensor is named <layer>."
                     f"{' or <layer>.'.join(LAYER_SUFFIXES[role])}")
