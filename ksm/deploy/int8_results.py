"""The int8 accuracies a run's export measured: recorded in its run.json, and tabulated against float.

run.json is the one record of a run that every reader (``ksm-sim``, the report, ``ksm-compare``)
trusts, so the int8 metrics go into it as one key (``metrics.int8``) without touching the others, and
only if the file is still the one that was measured: a run re-trained meanwhile is never given
another run's numbers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hwsim.fileio.atomic import UnsafeTarget, atomic_write_with, check_target
from hwsim.fileio.bounded import MAX_JSON_BYTES, check_size, parse_json
from hwsim.workload.runcheck import check_record
from ksm.training.runfolder import RUN_JSON, RunError


def record_int8(folder: Path, metrics: dict[str, Any], *, expected_sha256: str | None = None) -> None:
    """Set ``metrics.int8`` in ``folder/run.json``, leaving every other key as it is.

    The record read is validated by run.json's schema, and so is the record to be written (a bad int8 result is
    refused before the file is touched). The new file is written beside the old one and renamed over it
    (atomic on POSIX). If run.json is not the one measured (``expected_sha256``, e.g. :attr:`ksm.deploy.run_export.ExportResult.run_json_sha256`)
    or changes while the new one is written, nothing is replaced and ``RunError`` says so.
    """
    path = Path(folder) / RUN_JSON
    try:
        check_target(path)  # a symlinked run.json would be replaced by a regular file
    except UnsafeTarget as exc:
        raise RunError(str(exc)) from None
    try:
        check_size(path, MAX_JSON_BYTES, RunError)
        before = path.read_bytes()
        text = before.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: cannot be read back to record int8 metrics ({exc})") from None
    if expected_sha256 and hashlib.sha256(before).hexdigest() != expected_sha256:
        raise RunError(f"{path}: changed since it was measured (the run was re-written); not overwritten, "
                       f"run ksm-export again")
    record = parse_json(text, str(path), RunError)  # bounded: depth, integer digits
    check_record(record, str(path), RunError)
    record.setdefault("metrics", {})["int8"] = metrics
    text = json.dumps(record, indent=1) + "\n"
    check_record(json.loads(text), f"{path} (not written)", RunError)  # what a reader will see

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")
        if path.read_bytes() != before:
            raise RunError(f"{path}: changed while int8 metrics were measured; not overwritten (run again)")

    atomic_write_with(path, write)


def int8_table(records: list[dict[str, Any]]) -> Any:
    """Test top-1 (%) per task (rows): for each method its float, int8 folded and (mask methods)
    int8 on-the-fly accuracy (:func:`ksm.compare.results.int8_frame`); a mean row when there are several tasks."""
    import pandas as pd

    from ksm.compare.results import int8_frame

    suffix = {"float32": "float", "int8 folded": "int8", "int8 on the fly": "int8 on-the-fly"}
    frame = int8_frame(records)
    rows = [{"task": row["task"], "column": f"{row['method']} {name}", "top1": row[column]}
            for _, row in frame.iterrows() for column, name in suffix.items() if pd.notna(row[column])]
    table = pd.DataFrame(rows).pivot_table(index="task", columns="column", values="top1", sort=False)
    if len(table) > 1:
        table.loc["mean"] = table.mean(numeric_only=True)
    table.columns.name = None
    return table
