"""``ksm-train --config FILE.yaml``: a command's options kept in a file.

The file is a YAML mapping whose keys are the command's long option names without the leading dashes and
with underscores for the dashes inside (``--lr-mask`` is ``lr_mask``, ``--task`` is ``task``, a method's own
``--lora-rank`` is ``lora_rank``); a switch pair takes its positive name and a boolean (``soft: false`` is
``--no-soft``); a repeatable option takes a list or one value (``task: [digits, animals]``, ``method: ksm``)::

    # run.yaml
    task: [digits, animals]
    method: [ksm, piggyback]
    epochs: 3
    lr_mask: 0.001
    threads: 1
    log: csv

``ksm-train --config run.yaml --epochs 4`` trains with the file's options and 4 epochs: an option given on
the command line replaces the file's value (a repeatable one whole, not merged). The file is read by the
bounded YAML reader every hwsim file goes through (:func:`hwsim.fileio.bounded.parse_yaml`: size, depth,
aliases and duplicate keys bounded) and validated by a pydantic schema made from the command's own options
(:func:`config_schema`): unknown keys are refused (a key spelt with dashes is told its underscore name), each
value must have its option's type (no ``"3"`` for 3, no ``1`` for ``true``) and pass its option's own check
(range, choice, callback, and any check the command adds, such as a method's own), and the first problem is
one line naming the file and the key. A null (``epochs: null``, ``weights: ~``) is refused, never read as the
default nor as the text "None": the key is left out for the default, and an option that has a spelling of
"none" (``weights: none``, random init) is told it. The options the run was made with, resolved (file,
command line and defaults together), are written into its run folder as ``config.yaml`` (:data:`CONFIG`),
in the same keys, so ``--config`` reads them back; ``threads`` is the number torch used (its default is the
machine's cores), since a CPU run's numbers depend on it: the same run is bit-identical at the same thread
count and differs in the last digits at another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import click
import yaml
from pydantic import AfterValidator, BeforeValidator, Field, create_model

from hwsim.fileio.bounded import MAX_YAML_BYTES, parse_yaml, read_text
from hwsim.schemas.validation import Real, Record, validate

NOT_IN_FILE = ("config",)  # options a config file cannot set
CONFIG = "config.yaml"  # a run folder's record of the options it was made with
Check = Callable[[Any], object]  # a further check of an option's value: raises click's errors


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


def config_key(param: click.Parameter) -> str:
    """The key of ``param`` in a config file: its long option name without dashes, ``-`` as ``_``."""
    name = max((o for o in param.opts if o.startswith("--")), key=len, default=str(param.name))
    return name.lstrip("-").replace("-", "_")


def file_options(params: list[click.Parameter]) -> dict[str, click.Option]:
    """The options a config file may set, by key."""
    return {config_key(p): p for p in params
            if isinstance(p, click.Option) and p.expose_value and p.name not in NOT_IN_FILE}


def _python_type(param: click.Option) -> Any:
    """The type a YAML value of ``param`` must have before its option's own check."""
    kind = param.type
    if param.is_flag or isinstance(kind, click.types.BoolParamType):
        return bool
    if isinstance(kind, (click.types.IntParamType, click.IntRange)):
        return int
    if isinstance(kind, (click.types.FloatParamType, click.FloatRange)) or "float" in kind.name.lower():
        return Real()  # a finite number (an int too), never a bool
    return str


def _checked_by(param: click.Option, ctx: click.Context | None, extra: Check | None = None) -> Any:
    """The option's own check (its click type: range, choice; its callback; then ``extra``, a check the command
    adds) as a pydantic validator; a refusal is the check's one line, without click's "Invalid value for"."""
    def check(value: Any) -> Any:
        try:
            value = param.type.convert(value, param, ctx) if not param.multiple else \
                tuple(param.type.convert(v, param, ctx) for v in value)
            if param.callback is not None and ctx is not None:
                value = param.callback(ctx, param, value)
            if extra is not None:
                extra(value)
        except click.ClickException as exc:  # BadParameter, UsageError, a callback's own one line
            raise ValueError(exc.message.rstrip(".")) from None
        return value
    return AfterValidator(check)


def _one_or_many(value: Any) -> Any:
    """A repeatable option's value: a list, or one value meaning a list of it."""
    return value if isinstance(value, list) else [value]


def config_schema(params: list[click.Parameter], ctx: click.Context | None = None,
                  checks: Mapping[str, Check] | None = None) -> type[Record]:
    """The pydantic model of a config file for a command with ``params`` (every key optional, none unknown,
    none null). ``checks``: more checks of an option's value, by parameter name (raising click's errors)."""
    fields: dict[str, Any] = {}
    for key, param in file_options(params).items():
        kind = _python_type(param)
        if param.multiple:
            kind = Annotated[list[kind], BeforeValidator(_one_or_many)]  # type: ignore[valid-type]
        fields[key] = (Annotated[kind, _checked_by(param, ctx, (checks or {}).get(str(param.name)))],
                       Field(default=None, description=str(getattr(param, "help", "") or "")))
    return create_model("ConfigFile", __base__=Record, **fields)


def refuse_nulls(data: dict[str, Any], where: str, nones: Mapping[str, str] | None = None) -> None:
    """A null value (``KEY: null``, ``KEY: ~``, ``KEY:``, or one in a list) is no option's value: YAML's null
    would otherwise reach the option as the text "None" (``--weights None`` is random init) or as nothing
    (a traceback); one line naming the file and the key says to leave the key out for the default, or to
    write the option's own spelling of none (``nones``, by key: ``{"weights": "'none' for random init"}``)."""
    for key, value in data.items():
        if value is None:
            spelling = (nones or {}).get(key)
            raise ConfigError(f"{where}: {key}: null is not a value: leave the key out for the default"
                              + (f", or write {spelling}" if spelling else ""))
        if isinstance(value, list) and None in value:
            raise ConfigError(f"{where}: {key}[{value.index(None)}]: null is not a value: leave it out of the list")


def read_config(path: Path, params: list[click.Parameter], ctx: click.Context | None = None, *,
                nones: Mapping[str, str] | None = None, checks: Mapping[str, Check] | None = None) -> dict[str, Any]:
    """The options ``path`` sets, by parameter name, checked; :class:`ConfigError` names the file and the key.
    ``nones``: an option's spelling of none, by key, for the null refusal (:func:`refuse_nulls`); ``checks``:
    the command's further checks, by parameter name (:func:`config_schema`)."""
    where = str(path)
    data = parse_yaml(read_text(Path(path), MAX_YAML_BYTES, ConfigError), where, ConfigError)
    if data is None:  # an empty file sets nothing
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping of option names to values (e.g. 'epochs: 3'), "
                          f"got a {type(data).__name__}")
    options = file_options(params)
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: {key!r}: a key must be an option's name")
        if key not in options and key.replace("-", "_") in options:
            raise ConfigError(f"{where}: {key}: unknown key; write it {key.replace('-', '_')} (the option's name "
                              f"with underscores)")
        if key in NOT_IN_FILE:
            raise ConfigError(f"{where}: {key}: a config file cannot name another")
    refuse_nulls({k: v for k, v in data.items() if k in options}, where, nones)  # an unknown key: the schema's
    record = validate(config_schema(params, ctx, checks), data, where, ConfigError)
    return {str(options[key].name): getattr(record, key) for key in record.model_fields_set}


def config_yaml(config: dict[str, Any]) -> str:
    """A resolved config as the YAML file :func:`read_config` reads back (keys in the options' order)."""
    head = "# The options ksm-train made this run with (file, command line and defaults); --config reads it\n"
    return head + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=None)


def resolved_config(values: dict[str, Any], params: list[click.Parameter]) -> dict[str, Any]:
    """The options a command ran with (``values``: its parameters by name), as a config file's mapping:
    every option ``--config`` could set, with its value (paths as text, repeatable options as lists); an
    option left at None (the method's own or the machine's default) is left out."""
    out: dict[str, Any] = {}
    for key, param in file_options(params).items():
        value = values.get(str(param.name))
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        elif isinstance(value, Path):
            value = str(value)
        out[key] = value
    return out
