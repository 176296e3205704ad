"""The reference pages of the file formats, generated from their schemas: ``docs/reference/<format>.md``.

``python -m hwsim.schemas.reference docs/reference`` writes them; ``--check`` exits 1 when a page differs
from what the schemas say (a test runs it), so a field added to a schema without regenerating the pages
fails the suite rather than leaving the documentation behind.
"""

from __future__ import annotations

import importlib
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class Format:
    """One file format: its page's name and title, its schema (``module:Model``), and who reads it."""

    slug: str
    title: str
    schema: str
    read_by: str

    def model(self) -> type[BaseModel]:
        module, name = self.schema.split(":")
        return getattr(importlib.import_module(module), name)


FORMATS = (
    Format("profile", "Accelerator profile (YAML)", "hwsim.schemas.profile_file:ProfileFile",
           "`ksm-sim --profile`, `ksm-explore` (`profiles:`), `ksm-export --profile`"),
    Format("run-json", "Run record `run.json` (`ksm-run/1`)", "hwsim.schemas.run_record:RunRecord",
           "`ksm-sim --masks`, reports, `ksm-export`, `ksm-train --resume`"),
    Format("network-table", "Network table (`ksm-layers/1`, JSON)", "hwsim.schemas.run_record:NetworkTable",
           "`ksm-sim --network`, `ksm-explore` (`network:`)"),
    Format("task-header", "Packed task file header (`ksm-task/1`)", "hwsim.schemas.task_header:TaskHeader",
           "`ksm-sim --masks FILE.ksmtask`, `ksm.deploy.task_file.load_task`"),
    Format("explore-spec", "Sweep spec (`ksm-explore SPEC.yaml`)", "hwsim.schemas.explore_spec:ExploreSpec",
           "`ksm-explore`"),
    Format("topology-row", "SCALE-Sim topology CSV row", "hwsim.schemas.topology_row:TopologyRow",
           "`ksm-sim --topology`, `ksm-explore` (`topology:`)"),
    Format("onnx-input", "ONNX model input shape", "hwsim.schemas.onnx_shapes:OnnxInput",
           "`ksm-sim --onnx` (with `--input-shape`), `ksm-explore` (`onnx:`)"),
    Format("mapping-file", "Given mapping (`ksm-sim --mapping FILE`, YAML or JSON)",
           "hwsim.schemas.mapping_file:MappingFile", "`ksm-sim --mapping` ([mapping.md](../mapping.md))"),
)


def _type_name(annotation: Any) -> str:
    """A readable name of a field's type: ``list[Level]``, ``int | null``, ``one of 'a', 'b'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" if isinstance(a, str) else repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("…" if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "true/false",
                "NoneType": "null"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _constraints(annotation: Any) -> list[Any]:
    """The constraint objects inside a type: an optional ``Whole(...) | None`` keeps its range in the union."""
    if typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        found = []
        for item in args[1:]:
            found.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        return found + _constraints(args[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [c for a in typing.get_args(annotation) for c in _constraints(a)]
    return []


def _range(field: FieldInfo) -> str:
    parts = []
    for item in [*field.metadata, *_constraints(field.annotation)]:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥"),
                           ("max_length", "length ≤")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(parts)


def _nested(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's type names (inside lists, dicts, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested(a)]


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(fmt: Format) -> str:
    """The Markdown page of one format."""
    top = fmt.model()
    lines = [f"# {fmt.title}", "",
             f"<!-- generated by `python -m hwsim.schemas.reference docs/reference` from `{fmt.schema}`;"
             " do not edit -->", "", _doc(top), "", f"Read by: {fmt.read_by}.", ""]
    if getattr(top, "model_config", {}).get("extra") == "forbid":
        lines += ["A key not listed here is refused.", ""]
    else:
        lines += ["Keys not listed here are kept as they are, unchecked.", ""]
    seen: list[type[BaseModel]] = []
    queue = [top]
    while queue:
        model = queue.pop(0)
        if model in seen:
            continue
        seen.append(model)
        if model is not top:
            lines += [f"## `{model.__name__}`", "", _doc(model), ""]
        lines += ["| key | type | required | range | meaning |", "| --- | --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            key = field.alias or name
            if field.is_required():
                required = "yes"
            else:
                default = field.default if field.default is not PydanticUndefined else "…"
                required = f"no (default `{default!r}`)" if default is not None else "no"
            lines.append(f"| `{key}` | {_cell(_type_name(field.annotation))} | {_cell(required)} | "
                         f"{_cell(_range(field))} | {_cell(field.description or '')} |")
            queue.extend(m for m in _nested(field.annotation) if m not in seen)
        rules = getattr(model, "RULES", ())
        if rules:
            lines += ["", "Checked across fields:", ""] + [f"- {rule}" for rule in rules]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_pages(folder: Path, check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) every page and an index; return the pages that differ."""
    pages = {f"{fmt.slug}.md": render(fmt) for fmt in FORMATS}
    index = ["# File formats", "", "<!-- generated by `python -m hwsim.schemas.reference docs/reference`; "
             "do not edit -->", "",
             "Every file a command reads is checked against one schema before any work starts; a problem is one "
             "line naming the file and the field. These pages are generated from the schemas "
             "(`hwsim/schemas/`).", "", "| format | page | read by |", "| --- | --- | --- |"]
    index += [f"| {fmt.title} | [{fmt.slug}.md]({fmt.slug}.md) | {fmt.read_by} |" for fmt in FORMATS]
    pages["README.md"] = "\n".join(index) + "\n"
    differ = []
    for name, text in pages.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            differ.append(name)
            if not check:
                from hwsim.fileio.atomic import atomic_write

                folder.mkdir(parents=True, exist_ok=True)
                atomic_write(path, text)
    return differ


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    folder = Path(args[0] if args else "docs/reference")
    differ = write_pages(folder, check=check)
    if check and differ:
        print(f"{folder}: out of date: {', '.join(differ)} (run python -m hwsim.schemas.reference {folder})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
