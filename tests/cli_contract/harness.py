"""Run one command in a sandbox folder and list every way it broke the command-line contract.

The contract of every command (``ksm-train``, ``ksm-sim``, ``ksm-export``, ``ksm-compare``, ``ksm-explore``):

(a) exit 0 with a correct result, or a non-zero exit with exactly one ``Error:`` line that names a file or an
    option (one-line ``warning:``/``note:`` lines may precede it; a usage error is one line too, no click
    ``Usage:``/``Try`` preamble: hwsim.command_line); never a traceback,
    never an exception escaping the command;
(b) every input file's sha256 unchanged;
(c) nothing outside the named outputs touched (a checksum of the whole sandbox tree before and after); on a
    non-zero exit not even the named outputs (never a half-written output);
(d) no temporary left anywhere in the sandbox (``.NAME.PID.HEX.tmp``, ``.NAME.PID.old``, ``.NAME.partial``,
    ``.NAME.lock``, ``*.tmp``).

The command runs in process (``click.testing.CliRunner``) with the sandbox as working folder, so that a
relative default output (``runs/``, ``exports/``) lands inside the sandbox and is seen by (c). :func:`sweep`
runs a check on cases drawn by hypothesis (a fixed seed per sweep, not shrunk), :func:`every` on each case of
a list; both collect every violation rather than stopping at the first, and :func:`assert_kept` fails with all
of them, one line each."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import os
import re
import signal
import tempfile
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

# The console scripts of pyproject.toml's [project.scripts] (a test holds this table to the file).
COMMANDS: dict[str, str] = {
    "ksm-train": "ksm.cli.ksm_train:main",
    "ksm-sim": "hwsim.ksm_sim:main",
    "ksm-export": "ksm.cli.ksm_export:main",
    "ksm-compare": "ksm.cli.ksm_compare:main",
    "ksm-explore": "hwsim.explore.ksm_explore:main",
}
# Lines a failing command may print on stderr besides its one error line: the one-line notes the commands
# print before the work (an ONNX operator not costed, a folder skipped).
PREAMBLE = ("warning:", "skipping ", "note:")
TEMPORARY = re.compile(r"^\..+\.(tmp|old|partial|lock)$|\.tmp$")
TIMEOUT_S = 60  # one call; a hostile value that makes a command hang is reported as such


class Hung(Exception):
    """Raised in the command by the alarm after :data:`TIMEOUT_S` seconds."""


def entry(command: str) -> click.Command:
    """The click command behind a console script name."""
    module, name = COMMANDS[command].split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Call:
    """One invocation: the command line (paths relative to the sandbox), what it reads and writes, and what
    the hostile input was."""

    command: str
    args: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # files or folders the command reads (a folder: every file in it)
    outputs: tuple[str, ...] = ()  # the named outputs, files or folders (a folder: everything in it)
    names: tuple[
        str, ...
    ] = ()  # the error line must hold one of these (default: the paths and options given)
    refuse: bool = False  # the input is invalid: an exit 0 is a silent wrong result
    what: str = ""  # the hostile input in words, for the report

    def acceptable_names(self) -> tuple[str, ...]:
        """What an error line may name: the ``names`` given, else every option and path of the command
        line."""
        if self.names:
            return self.names
        found: list[str] = []
        for arg in self.args:
            if arg.startswith("-") and len(arg) > 1:
                found.append(arg.split("=", 1)[0])
            else:
                found += [arg, Path(arg).name] if arg not in (".", "") else [arg]
        return tuple(n for n in found if n)


@dataclass
class Outcome:
    """What the command did, and the contract violations found (empty: it kept the contract)."""

    call: Call
    exit_code: int
    stdout: str
    stderr: str
    exception: str | None
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One report line: command, input, what happened."""
        return f"{self.call.command} {' '.join(self.call.args)} [{self.call.what}]: " + "; ".join(
            self.violations
        )


# ---- the sandbox's state ---------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if path.is_dir():
        return "dir"
    try:
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) -> its kind and sha256."""
    state: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            state[str(path.relative_to(root))] = _digest(path)
    return state


def input_hashes(root: Path, inputs: Sequence[str]) -> dict[str, str]:
    """sha256 of every input file (every file inside an input folder)."""
    hashes: dict[str, str] = {}
    for item in inputs:
        path = root / item
        if path.is_dir() and not path.is_symlink():
            for sub, digest in tree_state(path).items():
                hashes[str(Path(item) / sub)] = digest
        elif path.exists() or path.is_symlink():
            hashes[item] = _digest(path)
    return hashes


def _under(rel: str, outputs: Sequence[str]) -> bool:
    parts = Path(rel).parts
    return any(parts[: len(Path(o).parts)] == Path(o).parts for o in outputs if o not in ("", "."))


def _diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Changed, added and removed entries, as ``~path``, ``+path``, ``-path``."""
    out = [f"~{p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    out += [f"+{p}" for p in after.keys() - before.keys()]
    out += [f"-{p}" for p in before.keys() - after.keys()]
    return sorted(out)


# ---- running a command -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def ring(signum: int, frame: Any) -> None:
        raise Hung(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _escaped(result: Result) -> str | None:
    """The exception that escaped the command (not click's ``SystemExit``), with where it was raised."""
    exc = result.exception
    if exc is None or isinstance(exc, SystemExit):
        return None
    where = ""
    if result.exc_info is not None:
        frames = traceback.extract_tb(result.exc_info[2])
        if frames:
            last = frames[-1]
            where = f" at {Path(last.filename).name}:{last.lineno}"
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:160]}{where}"


def _error_line_violations(call: Call, stderr: str) -> list[str]:
    """(a) for a non-zero exit: one ``Error:`` line naming a file or an option, nothing else but a
    preamble."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    found: list[str] = []
    if len(errors) != 1:
        found.append(f"{len(errors)} 'Error:' lines on stderr (one expected): {stderr.strip()[:200]!r}")
    others = [line for line in lines if not line.startswith(("Error:", *PREAMBLE))]
    if others:
        found.append(f"extra stderr lines: {others[:3]!r}")
    for line in errors[:1]:
        if len(line[len("Error:") :].strip()) < 3:
            found.append(f"empty error line {line!r}")
        names = call.acceptable_names()
        if names and not any(n in line for n in names):
            found.append(f"error line names none of {list(names)[:6]}: {line[:200]!r}")
    return found


def run_call(
    root: Path,
    call: Call,
    check_result: Callable[[Path], list[str]] | None = None,
    timeout_s: int = TIMEOUT_S,
) -> Outcome:
    """Run ``call`` in the sandbox ``root`` and check the contract; ``check_result(root)`` lists what is wrong
    with the result of an exit 0 (a missing output, a non-finite number)."""
    before = tree_state(root)
    hashes = input_hashes(root, call.inputs)
    with _inside(root), _alarm(timeout_s):
        result = CliRunner().invoke(entry(call.command), list(call.args))
    after = tree_state(root)
    escaped = _escaped(result)
    outcome = Outcome(call, result.exit_code, result.stdout, result.stderr, escaped)
    found = outcome.violations
    if escaped is not None:
        found.append(("hang: " if isinstance(result.exception, Hung) else "traceback: ") + escaped)
    elif "Traceback (most recent call last)" in result.output:
        found.append("traceback printed")
    if escaped is None and result.exit_code == 0:
        if call.refuse:
            found.append("silent: exit 0 on an invalid input")
        if any(line.startswith("Error:") for line in result.stderr.splitlines()):
            found.append("exit 0 after an 'Error:' line")
    elif escaped is None:
        found += _error_line_violations(call, result.stderr)
    now = input_hashes(root, call.inputs)
    changed = _diff(hashes, now)
    if changed:
        found.append(f"input changed: {sorted(changed)[:5]}")
    diff = _diff(before, after)
    outside = [d for d in diff if not _under(d[1:], call.outputs)]
    if outside:
        found.append(f"touched outside the named outputs: {outside[:5]}")
    if result.exit_code != 0 and len(diff) > len(outside):
        found.append(f"half-written output after a failure: {[d for d in diff if d not in outside][:5]}")
    orphans = [p for p in after if p not in before and TEMPORARY.search(Path(p).name)]
    if orphans:
        found.append(f"temporary left: {orphans[:5]}")
    if result.exit_code == 0 and escaped is None and check_result is not None:
        found += [f"wrong result: {w}" for w in check_result(root)]
    return outcome


# ---- many calls: a sample drawn by hypothesis, or an enumeration ----------------------------------------

Check = Callable[[Path, Any], "Outcome | None"]  # (a fresh sandbox, one case) -> the outcome


def sweep(examples: int) -> Callable[[Check], Callable[[st.SearchStrategy], list[Outcome]]]:
    """Run ``check(sandbox, case)`` on ``examples`` drawn cases, each in a fresh sandbox; return every outcome
    that broke the contract (the sweep does not stop at the first)."""

    def wrap(check: Check) -> Callable[[st.SearchStrategy], list[Outcome]]:
        def run(strategy: st.SearchStrategy) -> list[Outcome]:
            bad: list[Outcome] = []

            @seed(zlib.crc32(check.__qualname__.encode()))  # a fixed seed per sweep: the same cases every run
            @settings(
                max_examples=examples,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def each(case: Any) -> None:
                _run_one(check, case, bad)

            each()
            return bad

        return run

    return wrap


def every(check: Check) -> Callable[[list[Any]], list[Outcome]]:
    """Run ``check(sandbox, case)`` on every case of a list (an enumeration, not a sample), each in a fresh
    sandbox; return every outcome that broke the contract."""

    def run(cases: list[Any]) -> list[Outcome]:
        bad: list[Outcome] = []
        for case in cases:
            _run_one(check, case, bad)
        return bad

    return run


def _run_one(check: Check, case: Any, bad: list[Outcome]) -> None:
    """``check`` one case in a fresh sandbox (removed after); keep its outcome in ``bad`` if it broke the
    contract."""
    with tempfile.TemporaryDirectory(prefix="contract-") as tmp:
        outcome = check(Path(tmp), case)
    log(outcome)
    if outcome is not None and outcome.violations:
        bad.append(outcome)


def log(outcome: Outcome | None) -> None:
    """With ``CLI_CONTRACT_LOG=FILE``, every outcome is appended to FILE (one line: what, exit, error
    line)."""
    path = os.environ.get("CLI_CONTRACT_LOG")
    if path and outcome is not None:
        error = next((x for x in outcome.stderr.splitlines() if x.startswith("Error:")), "")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(
                f"{outcome.call.command} [{outcome.call.what}] refuse={outcome.call.refuse} "
                f"exit={outcome.exit_code} {error[:150]!r} {outcome.violations}\n"
            )


def assert_kept(bad: list[Outcome]) -> None:
    """Fail with every violation found, one line each, duplicates once."""
    lines = list(dict.fromkeys(o.line() for o in bad))
    assert not lines, f"{len(lines)} contract violations:\n" + "\n".join(lines)


# ---- results of an exit 0 --------------------------------------------------------------------------------


def non_finite(document: Any, where: str = "") -> list[str]:
    """The paths of every NaN or infinite number in a decoded JSON document."""
    if isinstance(document, float) and not math.isfinite(document):
        return [where or "."]
    if isinstance(document, dict):
        return [p for k, v in document.items() for p in non_finite(v, f"{where}.{k}")]
    if isinstance(document, list):
        return [p for i, v in enumerate(document) for p in non_finite(v, f"{where}[{i}]")]
    return []


def sim_json_problems(path: Path) -> list[str]:
    """What is wrong with a ``ksm-sim --json`` document: unreadable, non-finite, or a cost that is no cost."""
    import json

    if not path.is_file():
        return [f"{path.name} not written"]
    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: float(c))
    except ValueError as exc:
        return [f"{path.name} is not JSON ({exc})"]
    found = [f"non-finite {p}" for p in non_finite(document)[:3]]
    for i, result in enumerate(document.get("results", [])):
        totals = result.get("totals", {})
        for key in ("energy_j", "latency_s", "macs"):
            value = totals.get(key)
            if not isinstance(value, (int, float)) or not value > 0:
                found.append(f"results[{i}].totals.{key} = {value!r}")
        top1 = result.get("top1")
        if top1 is not None and not (isinstance(top1, (int, float)) and 0 <= top1 <= 1):
            found.append(f"results[{i}].top1 = {top1!r}")
        if totals.get("task_specific_bytes", 0) < 0:
            found.append(f"results[{i}].totals.task_specific_bytes = {totals['task_specific_bytes']!r}")
    if not document.get("results"):
        found.append("no results")
    return found
