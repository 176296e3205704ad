"""Which class trains each method of the catalogue: a registry filled by a class decorator.

The traits of a method (default BatchNorm, mask kind, sequence or not, label, colour) live in
:mod:`hwsim.catalogue`, torch-free, so that hwsim can cost and draw a method without torch. This
module binds a catalogue name to its training code, as timm's ``register_model`` binds a model name
to its constructor::

    @register_method
    class KSM(MaskedMethod):
        name = "ksm"

Adding a method is one module with one decorated class (plus its row in the catalogue); nothing
else in ksm lists methods: ``ksm-train`` adds the options a class declares (:func:`method_cli_options`),
``ksm-compare`` its variants (:mod:`ksm.methods.variants`), ``ksm-train`` and the pipeline build it with
:func:`make_method`. The built-in methods' modules are imported on the first lookup, so importing this
module stays cheap (torch-free).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import click

from hwsim import catalogue

if TYPE_CHECKING:
    from ksm.methods.base import MaskConfig, Method

BUILTIN_MODULES = (  # each registers its method when imported
    "ksm.methods.kernel_soft_mask",
    "ksm.methods.piggyback",
    "ksm.methods.packnet",
    "ksm.methods.cpg",
    "ksm.methods.finetune",
    "ksm.methods.head_only",
    "ksm.methods.lora_adapters",
)

_CLASSES: dict[str, type[Method]] = {}
M = TypeVar("M", bound="type[Method]")


def register_method(cls: M) -> M:
    """Class decorator: ``cls.name`` trains that catalogue method.

    Refuses a name the catalogue does not know (its traits would be missing in hwsim), a name bound
    twice, and a class whose default BatchNorm policy disagrees with the catalogue's.
    """
    name = cls.name
    traits = catalogue.get(name)  # KeyError names the known methods
    if traits.batchnorm != cls.default_batchnorm:
        raise ValueError(f"{cls.__qualname__}: default_batchnorm {cls.default_batchnorm!r} differs from the "
                         f"catalogue's {traits.batchnorm!r} for {name!r}")
    if name in _CLASSES and _CLASSES[name] is not cls:
        raise ValueError(f"method {name!r} is already trained by {_CLASSES[name].__qualname__}")
    _CLASSES[name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Forget the class of ``name`` (tests that register a toy method clean up with this)."""
    _CLASSES.pop(name, None)


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def method_class(name: str) -> type[Method]:
    """The class that trains ``name``; ``ValueError`` listing the trainable methods otherwise."""
    if name not in _CLASSES:
        _load_builtins()
    if name not in _CLASSES:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(method_names())}")
    return _CLASSES[name]


def make_method(name: str, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                soft: bool = True, options: dict | None = None) -> Method:
    """The registered method ``name``. ``mask``: the mask hyperparameters (None: the class's default, the
    authors' values); ``soft``: methods with a soft part (KSM); ``options``: keyword arguments of the methods
    that take options (``takes_options``: the sequence methods' ``prune_ratio``, LoRA's ``rank``)."""
    cls = method_class(name)
    extra = dict(options or {}) if cls.takes_options else {}
    if catalogue.get(name).soft_part:
        extra["soft"] = soft
    if mask is not None:
        extra["mask"] = mask
    return cls(arch, batchnorm=batchnorm, **extra)


def method_names() -> tuple[str, ...]:
    """The methods ksm can train, in the catalogue's display order."""
    _load_builtins()
    return tuple(n for n in catalogue.names() if n in _CLASSES)


def method_cli_options() -> list[tuple[str, tuple[click.Option, ...]]]:
    """(``--help`` section, options) of the trainable methods that declare ``cli_options``, in display order.

    An option two methods share (PackNet's and CPG's ``--prune-ratio``: one object) is listed once, in the
    first one's section; two different options under one name are refused.
    """
    sections: dict[str, list[click.Option]] = {}
    owner: dict[str | None, tuple[str, click.Option]] = {}
    for name in method_names():
        cls = _CLASSES[name]
        for option in cls.cli_options:
            if option.name in owner:
                if owner[option.name][1] is not option:
                    raise ValueError(f"method {name!r}: option {option.opts[0]} is already declared by "
                                     f"method {owner[option.name][0]!r}")
                continue
            owner[option.name] = (name, option)
            sections.setdefault(cls.cli_section or name, []).append(option)
    return [(title, tuple(options)) for title, options in sections.items()]


class LiveChoice(click.Choice):
    """A choice read when the option is parsed or shown, so that what was registered after the command
    was built (a plug-in, a test's toy method) is accepted and listed too."""

    def __init__(self, choices: Callable[[], Sequence[str]]) -> None:
        self._live = choices
        super().__init__(tuple(choices()))

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._live())

    @choices.setter
    def choices(self, value: object) -> None:  # click's __init__ assigns a snapshot: keep reading live
        pass


class MethodChoice(LiveChoice):
    """``--method``: the catalogue's methods."""

    def __init__(self) -> None:
        super().__init__(catalogue.names)
