"""Which class trains each method of the catalogue: a registry filled by a class decorator.

The traits of a method (default BatchNorm, mask kind, sequence or not, label, colour) live in
:mod:`hwsim.catalogue`, torch-free, so that hwsim can cost and draw a method without torch. This
module binds a catalogue name to its training code, as timm's ``register_model`` binds a model name
to its constructor::

    @register_method
    class KSM(MaskedMethod):
        name = "ksm"

Adding a method is one module with one decorated class (plus its row in the catalogue); nothing
else in ksm lists methods: every public module of :mod:`ksm.methods` is imported on the first lookup
(:func:`_discover`), ``ksm-train`` adds the options a class declares (:func:`method_cli_options`),
``ksm-compare`` its variants (:mod:`ksm.methods.variants`), ``ksm-train`` and the pipeline build it with
:func:`make_method`. Discovery waits for the first lookup, so importing this module stays cheap (torch-free).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, TypeVar

import click

from hwsim import catalogue

if TYPE_CHECKING:
    from ksm.methods.base import MaskConfig, Method

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


@cache
def _discover() -> None:
    """Import every public module of :mod:`ksm.methods` once: a method's module registers its class when
    imported, so a new module is found without being listed anywhere (private ``_*`` modules are skipped)."""
    import ksm.methods as package

    for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        if not module.name.rpartition(".")[2].startswith("_"):
            importlib.import_module(module.name)


def method_class(name: str) -> type[Method]:
    """The class that trains ``name``; ``ValueError`` listing the trainable methods otherwise."""
    if name not in _CLASSES:
        _discover()
    if name not in _CLASSES:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(method_names())}")
    return _CLASSES[name]


def make_method(name: str, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                soft: bool = True, options: dict | None = None) -> Method:
    """The registered method ``name``. ``mask``: the mask hyperparameters (None: the class's ``default_mask``);
    ``soft``: methods with a soft part (the catalogue's ``soft_part``); ``options``: the method's own keyword
    arguments (its ``options_from_cli``, run.json's ``method_options``), always passed, so that a class that
    declares options gets them and one that takes none refuses them (``TypeError``) rather than dropping them."""
    cls = method_class(name)
    extra = dict(options or {})
    if catalogue.get(name).soft_part:
        extra["soft"] = soft
    return cls(arch, batchnorm=batchnorm, mask=mask, **extra)


def method_names() -> tuple[str, ...]:
    """The methods ksm can train (a catalogue row with a registered class), in the catalogue's display order."""
    _discover()
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


def option_owners() -> dict[click.Option, tuple[str, ...]]:
    """Each method option → the trainable methods that declare it (PackNet and CPG share ``--prune-ratio``),
    so that ``ksm-train`` can refuse an option none of the chosen methods reads."""
    owners: dict[click.Option, tuple[str, ...]] = {}
    for name in method_names():
        for option in _CLASSES[name].cli_options:
            owners[option] = (*owners.get(option, ()), name)
    return owners


class LiveChoice(click.Choice):
    """A choice read when the option is parsed or shown, so that what was registered after the command
    was built (a plug-in, a test's toy method) is accepted and listed too; nothing is read when the
    command is built, so that building it imports nothing."""

    def __init__(self, choices: Callable[[], Sequence[str]]) -> None:
        self._live = choices
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._live())

    @choices.setter
    def choices(self, value: object) -> None:  # click's __init__ assigns a snapshot: keep reading live
        pass


class MethodChoice(LiveChoice):
    """``--method``: the methods ksm can train (:func:`method_names`), not every catalogue row: a row
    without a registered class is refused as a choice, in one line, rather than by a traceback later."""

    def __init__(self) -> None:
        super().__init__(method_names)
