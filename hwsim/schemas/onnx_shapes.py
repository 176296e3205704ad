"""An ONNX model's input shape, and the attributes of its ``Conv`` nodes, as hwsim reads them.

An ONNX CNN is costed at one static input shape ``[N, C, H, W]``. A model that leaves the height or width
symbolic (``["N", 3, "H", "W"]``) has no cost until they are fixed: the reader refuses it in one line
naming the file, the input and the dimension, unless ``--input-shape`` (or ``input_shape:``
beside ``onnx:`` in a sweep spec) gives the shape, which must agree with every static dimension the model declares. A
symbolic batch is taken as 1 (hwsim costs one inference). The shape is fixed on the graph's input before
ONNX shape inference, so every layer's sizes follow from it.

A ``Conv`` node's attributes are checked by :class:`ConvAttributes` before they are used: a ``strides``
of one value, a negative pad or a zero group is one line naming the node, never a traceback.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from hwsim.fileio.bounded import MAX_SIZE
from hwsim.schemas.validation import Record, Whole

AXES = ("batch", "channels", "height", "width")
MAX_NAME = 1024  # a tensor name of an exporter's graph; longer is not a name but a filled buffer

# MAX_SIZE (2**20) bounds every size, as in the other layer formats: no CNN input has a million channels or
# a million-pixel side, and a typo of 1e12 must be refused before the cost model multiplies it.
Dim = Whole(ge=1, le=MAX_SIZE)
Pad = Whole(ge=0, le=MAX_SIZE)


def _static(value: Any) -> Any:
    """The declared dimensions as a tuple: a symbolic batch becomes 1; a symbolic or missing other
    dimension is refused, naming it (``None`` stands for a dimension the model leaves unnamed)."""
    if not isinstance(value, (list, tuple)):
        return value
    if len(value) != len(AXES):
        raise ValueError("must have 4 dimensions [N, C, H, W] (an image input)")
    dims = list(value)
    if not _is_int(dims[0]):
        dims[0] = 1
    for axis, dim in enumerate(dims):
        if not _is_int(dim):
            what = f"symbolic ({dim!r})" if isinstance(dim, str) and dim else "unknown"
            raise ValueError(f"dimension {axis} ({AXES[axis]}) is {what}: give the shape, e.g. "
                             "--input-shape 1x3x224x224")
    return tuple(dims)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class OnnxInput(Record):
    """The input an ONNX CNN is costed at: the graph's image input and its static shape ``[N, C, H, W]``.
    A symbolic batch is taken as 1; a symbolic or missing channel, height or width must be given with
    ``ksm-sim --input-shape 1x3x224x224`` (in a sweep spec: `input_shape: [1, 3, 224, 224]` beside `onnx:`).
    Each `Conv` node's attributes (`strides`, `pads`, `dilations`, `kernel_shape`, `group`, `auto_pad`) are
    checked too: two strides, dilations and kernel sizes in 1..2^20, four pads in 0..2^20, a group that
    divides the node's channels and filters, a kernel that matches the weight."""

    RULES: ClassVar[tuple[str, ...]] = (
        "A symbolic batch dimension is taken as 1; any other symbolic or missing dimension is refused "
        "unless the shape is given.",
        "A given shape agrees with every static dimension the model declares.",
    )

    name: str = Field(min_length=1, max_length=MAX_NAME, description="the graph input's name")
    shape: Annotated[tuple[Dim, Dim, Dim, Dim], BeforeValidator(_static)] = Field(
        description="[batch, channels, height, width], each in 1..2^20; batch and channels as counts, height and "
                    "width in pixels")

    @field_validator("shape")
    @classmethod
    def _agrees(cls, shape: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        declared = (info.context or {}).get("declared")
        if declared is not None and len(declared) != len(shape):
            raise ValueError(f"the model declares {len(declared)} dimensions, not [N, C, H, W]")
        if declared:
            for axis, (given, static) in enumerate(zip(shape, declared)):
                if _is_int(static) and static != given:
                    raise ValueError(f"dimension {axis} ({AXES[axis]}) {given} disagrees with the model's "
                                     f"static {static}")
        return shape


def _ints(count: int, what: str) -> Any:
    """A before-validator: an attribute list of ``count`` integers, as a tuple (strict mode wants one)."""
    def check(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != count:
                raise ValueError(f"must be {count} integers ({what})")
            return tuple(value)
        return value
    return BeforeValidator(check)


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class ConvAttributes(Record):
    """The attributes of one 2-D ``Conv`` node (ONNX operator ``Conv``); absent ones take ONNX's defaults.
    ``context``: ``weight`` (the weight's [M, C/group, kH, kW]) and ``channels`` (the input's C)."""

    RULES: ClassVar[tuple[str, ...]] = (
        "`kernel_shape`, when given, equals the weight's kernel.",
        "`group` times the weight's input channels equals the input's channels, and divides the filters.",
        "`pads` are given only with `auto_pad` NOTSET.",
    )

    auto_pad: Annotated[Literal["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"], BeforeValidator(_text)] = Field(
        default="NOTSET", description="automatic padding, or NOTSET for explicit `pads`")
    strides: Annotated[tuple[Dim, Dim], _ints(2, "height, width")] = Field(
        default=(1, 1), description="stride [height, width] in pixels")
    pads: Annotated[tuple[Pad, Pad, Pad, Pad], _ints(4, "top, left, bottom, right")] = Field(
        default=(0, 0, 0, 0), description="zero padding [top, left, bottom, right] in pixels")
    dilations: Annotated[tuple[Dim, Dim], _ints(2, "height, width")] = Field(
        default=(1, 1), description="dilation [height, width]")
    kernel_shape: Annotated[tuple[Dim, Dim] | None, _ints(2, "height, width")] = Field(
        default=None, description="kernel [height, width] in pixels; default: the weight's")
    group: Dim = Field(default=1, description="channel groups")

    @model_validator(mode="after")
    def _against_the_tensors(self, info: ValidationInfo) -> ConvAttributes:
        """The cross-field rules, checked whether or not the node sets the attribute: a field validator runs
        only on a value given, so a ``group`` left at its default of 1 was never held to the channels."""
        if any(self.pads) and self.auto_pad != "NOTSET":
            raise ValueError(f"pads: given with auto_pad {self.auto_pad} (ONNX allows pads only with NOTSET)")
        context = info.context or {}
        weight, channels = context.get("weight"), context.get("channels")
        if weight is None:
            return self
        if self.kernel_shape is not None and tuple(weight[2:]) != self.kernel_shape:
            raise ValueError(f"kernel_shape: {list(self.kernel_shape)} disagrees with the weight's kernel "
                             f"{list(weight[2:])}")
        if channels is not None and weight[1] * self.group != channels:
            raise ValueError(f"group: the weight has {weight[1]} input channels per group; {self.group} group(s) "
                             f"make {self.group * weight[1]}, not the input's {channels} channels")
        if weight[0] % self.group:
            raise ValueError(f"group: {self.group} does not divide the weight's {weight[0]} filters")
        return self
