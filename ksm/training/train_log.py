"""What training reports while it runs: one line per epoch for any log, and scalars per step and epoch.

**The epoch line.** :func:`epoch_line` is one line per epoch with the loss, the training and validation top-1,
the throughput, the elapsed time and an estimate of the time left, as Keras's ``fit`` or PyTorch Lightning
print it. The loop logs it on the ``ksm.training`` logger at INFO, so it reaches a file whether or not stderr
is a terminal (a batch job, ``nohup``, CI); :func:`log_to_stderr` (what ``ksm-train`` calls) sends the
``ksm`` loggers to stderr through ``tqdm.write``, which clears a live progress bar, prints the line and
redraws the bar, so that in a terminal the bar shows while an epoch runs and the epoch lines stay above it.
A library caller sees the lines only when it configures logging itself (``logging.basicConfig(level=INFO)``).

**The scalar logs.** ``ksm-train --log csv`` and ``--log tensorboard`` (:class:`ScalarLog`) write the same
scalars: per optimiser step the batch's loss and top-1 (rank 0's share of the global batch in a
data-parallel job) and the learning rates after the cosine schedule; per epoch the history row of
``run.json`` (loss, training and validation top-1, seconds) with the throughput. While the run trains they
are written into its partial folder (``.<run>.partial/logs/``), beside the epoch checkpoint; the finished run
folder is built in a temporary folder with them and renamed into place as a whole
(:func:`ksm.training.runfolder.write_run`), so a finished run holds its complete log and an unfinished run
none. A resumed run drops the rows of the epoch it was interrupted in (TensorBoard: ``purge_step``) and goes
on from its last checkpoint, so its log reads as an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hwsim.fileio.atomic import atomic_write

log = logging.getLogger("ksm.training")

LOGS = "logs"  # the run folder's sub-folder of scalar logs
STEPS_CSV = "steps.csv"
EPOCHS_CSV = "epochs.csv"
TENSORBOARD = "tensorboard"  # LOGS/TENSORBOARD: the event files
BACKENDS = ("csv", "tensorboard")
STEP_COLUMNS = ("step", "epoch", "loss", "top1", "lr_body", "lr_head")
EPOCH_COLUMNS = ("epoch", "step", "loss", "train_top1", "val_top1", "seconds", "images_per_second")
TENSORBOARD_EXTRA = "pip install 'ksm[tensorboard]'"


# ---------------------------------------------------------------------------------------------
# The epoch line
# ---------------------------------------------------------------------------------------------
def clock(seconds: float) -> str:
    """``H:MM:SS`` (``1:02:03``), as tqdm and Keras print durations."""
    whole = max(round(seconds), 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def epoch_line(task: str, method: str, row: dict[str, Any], epochs: int, *, images: int, elapsed: float,
               eta: float) -> str:
    """One line of the epoch just trained: ``digits ksm epoch 2/3: loss 0.112, train top-1 96.18%, val top-1 -,
    45.6 img/s, elapsed 0:01:21, ETA 0:00:40``. ``row`` is its history row (``val_top1`` where a validation
    split was scored); ``images``: the training images the epoch read; ``elapsed``: seconds since the task
    started (earlier processes of a resumed run included); ``eta``: seconds estimated to its last epoch."""
    val = row.get("val_top1")
    seconds = row.get("seconds") or 0.0
    rate = images / seconds if seconds > 0 else math.inf
    phase = f" {row['phase']}" if row.get("phase") not in (None, "train") else ""
    return (f"{task} {method}{phase} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}, "
            f"train top-1 {100 * row['train_top1']:.2f}%, "
            f"val top-1 {'-' if val is None else f'{100 * val:.2f}%'}, {rate:.1f} img/s, "
            f"elapsed {clock(elapsed)}, ETA {clock(eta)}")


class TqdmHandler(logging.Handler):
    """A logging handler that writes to stderr through ``tqdm.write``: a live bar on stderr is cleared, the
    line printed, the bar redrawn. Without a bar (a file, a pipe) it writes the line as a plain handler does.
    stderr is looked up at each line (a test runner, a notebook may replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: a failing handler reports, never raises
            self.handleError(record)


def log_to_stderr(level: int = logging.INFO) -> logging.Handler:
    """Send the ``ksm`` loggers' records (the epoch lines, the training warnings) to stderr, one line each,
    through :class:`TqdmHandler`; calling it again adds no second handler."""
    logger = logging.getLogger("ksm")
    for handler in logger.handlers:
        if isinstance(handler, TqdmHandler):
            return handler
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


# ---------------------------------------------------------------------------------------------
# Scalars per step and per epoch
# ---------------------------------------------------------------------------------------------
def backends(values: Iterable[str]) -> tuple[str, ...]:
    """``--log``'s values (repeated or comma-separated) as the backends in :data:`BACKENDS` order; a
    ``ValueError`` names an unknown one."""
    names = [v.strip().lower() for value in values for v in str(value).split(",") if v.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a log; choose from {', '.join(BACKENDS)} (repeatable, or "
                         f"comma-separated: --log csv,tensorboard)")
    return tuple(b for b in BACKENDS if b in names)


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a ``RuntimeError`` of one line naming the extra to install
    when the ``tensorboard`` package is missing (torch imports it only then)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError("TensorBoard logging requires TensorBoard ...")
        raise RuntimeError(f"--log tensorboard needs the tensorboard package, which is not installed: "
                           f"{TENSORBOARD_EXTRA}") from None
    return SummaryWriter


def _number(value: Any) -> str:
    """A CSV cell: empty for a missing value, else the number as Python writes it (full precision)."""
    return "" if value is None else repr(float(value)) if isinstance(value, float) else str(value)


def _kept_rows(path: Path, epochs: int) -> list[dict[str, str]]:
    """The rows of a CSV log of an interrupted run that belong to its first ``epochs`` epochs (the ones its
    checkpoint holds); a file that is not such a log is started over."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [r for r in rows if 0 < int(r["epoch"]) <= epochs]
    except (OSError, ValueError, KeyError, TypeError, csv.Error):
        return []


class _CsvTable:
    """One CSV log, appended a row at a time and flushed, so that a crash loses at most the row being written."""

    def __init__(self, path: Path, columns: Sequence[str], keep_epochs: int) -> None:
        self.columns = tuple(columns)
        kept = _kept_rows(path, keep_epochs) if keep_epochs and path.exists() else []
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write(path, text.getvalue())  # the kept part, replaced whole: no torn header
        self.handle = path.open("a", encoding="utf-8", newline="")
        self.writer = csv.DictWriter(self.handle, self.columns, extrasaction="ignore", lineterminator="\n")

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: _number(row.get(k)) for k in self.columns})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class ScalarLog:
    """The scalar logs of one run (``kinds``: some of :data:`BACKENDS`), written into ``folder/logs``.

    The training loop calls :meth:`begin` once it knows where it starts (a resumed run: after its last
    checkpoint's epoch), :meth:`step` after every optimiser step, :meth:`epoch` after every epoch and
    :meth:`close` at the end. Steps are counted from 1 over the whole run; an epoch's scalars are logged at
    the step that ends it (TensorBoard's x axis), its number in the ``epoch`` column.
    """

    def __init__(self, folder: Path, kinds: Sequence[str]) -> None:
        self.folder = Path(folder) / LOGS
        self.kinds = tuple(kinds)
        self._steps: _CsvTable | None = None
        self._epochs: _CsvTable | None = None
        self._board: Any = None
        self._writer_class = summary_writer_class() if "tensorboard" in self.kinds else None

    def begin(self, epochs_done: int, steps_per_epoch: int) -> None:
        """Open the logs to go on after ``epochs_done`` epochs (0: a fresh run; earlier rows are dropped)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if "csv" in self.kinds:
            self._steps = _CsvTable(self.folder / STEPS_CSV, STEP_COLUMNS, epochs_done)
            self._epochs = _CsvTable(self.folder / EPOCHS_CSV, EPOCH_COLUMNS, epochs_done)
        if self._writer_class is not None:
            board = self.folder / TENSORBOARD
            if not epochs_done and board.exists():  # a fresh start over an interrupted run's events
                for stale in board.iterdir():
                    stale.unlink()
            # events at or after the first step still to train (an interrupted epoch's) are dropped when read
            self._board = self._writer_class(log_dir=str(board), purge_step=epochs_done * steps_per_epoch + 1,
                                             flush_secs=30)

    def step(self, step: int, epoch: int, values: dict[str, float | None]) -> None:
        """The scalars of optimiser step ``step`` (from 1), in epoch ``epoch`` (from 1)."""
        if self._steps is not None:
            self._steps.write({"step": step, "epoch": epoch, **values})
        if self._board is not None:
            for key, value in values.items():
                if value is not None:
                    self._board.add_scalar(f"step/{key}", value, step)

    def epoch(self, step: int, row: dict[str, Any], images_per_second: float) -> None:
        """The history row of the epoch that ends at ``step``, with its throughput."""
        values = {**row, "step": step, "images_per_second": images_per_second}
        if self._epochs is not None:
            self._epochs.write(values)
        if self._board is not None:
            for key in EPOCH_COLUMNS[2:]:
                if values.get(key) is not None:
                    self._board.add_scalar(f"epoch/{key}", float(values[key]), step)
            self._board.flush()

    def close(self) -> None:
        for table in (self._steps, self._epochs):
            if table is not None:
                table.close()
        if self._board is not None:
            self._board.close()
        self._steps = self._epochs = self._board = None
