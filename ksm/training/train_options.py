"""``ksm-train``'s parsed command line (:class:`Options`) and what it turns into: tasks, data, specs, folders.

The seam between the command (:mod:`ksm.cli.ksm_train`, which declares the options and their help) and the
batch it starts (:mod:`ksm.training.batch_of_runs`, which plans, locks and trains the runs): neither needs the
other's details, only these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hwsim import catalogue
from ksm.methods.registry import method_class
from ksm.training.run_names import run_folder_name, sequence_folder_name

if TYPE_CHECKING:
    from ksm.data.datasets import TaskData
    from ksm.methods.base import MaskConfig
    from ksm.training.pipeline import RunSpec


@dataclass(frozen=True)
class Options:
    """``ksm-train``'s command line, by section, and what it turns into: task names, data, run specs."""

    # Tasks and methods
    tasks: tuple[str, ...]
    suite: str | None
    data_root: Path | None
    methods: tuple[str, ...]
    # Backbone and data
    arch: str
    weights: str
    input_size: int | None
    max_train: int
    # Training
    epochs: int
    batch_size: int
    lr_mask: float
    lr_head: float
    seed: int
    # Masks and BatchNorm
    batchnorm: str | None
    soft: bool
    recalibrate_bn: bool
    mask_init: float | None  # the mask options: None where not given, the method's own (its default_mask)
    threshold: float | None
    beta: float | None
    temperature: float | None
    # Output
    out: Path | None
    runs_dir: Path
    force: bool
    resume: bool
    skip_existing: bool
    progress: bool
    # Hardware
    device: str
    threads: int | None
    nproc: int
    amp: bool
    # the methods' own options (their classes' cli_options), by parameter name
    method_values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, values: dict[str, Any]) -> Options:
        """The parsed command line: ksm-train's own options as fields, every method's own in ``method_values``."""
        own = {f.name for f in fields(cls)} - {"method_values"}
        return cls(**{k: v for k, v in values.items() if k in own},
                   method_values={k: v for k, v in values.items() if k not in own})

    def task_names(self) -> list[str]:
        from ksm.data.datasets import DEFAULT_SUITE
        from ksm.checks import task_name

        names = [task_name(t) for t in self.tasks] + (list(DEFAULT_SUITE) if self.suite == "default" else [])
        if not names:
            raise click.UsageError("name a --task or --suite default")
        return names

    def load(self, task: str) -> TaskData:
        """The task's data at the run's input size (built-in tasks limited to ``--max-train`` images)."""
        from ksm.data.datasets import load_task

        return load_task(task, data_root=self.data_root, input_size=self.input_size or (224 if self.data_root else 64),
                         max_train=None if self.data_root or not self.max_train else self.max_train)

    def spec(self, method: str) -> RunSpec:
        """The run spec of ``method`` (a sequence method's spec covers the whole sequence)."""
        from ksm.training.pipeline import make_spec

        return make_spec(method, arch=self.arch, weights=self.weights, epochs=self.epochs, batch_size=self.batch_size,
                         lr_body=self.lr_mask, lr_head=self.lr_head, seed=self.seed,
                         recalibrate_bn=self.recalibrate_bn,
                         mask=self.mask(method),
                         batchnorm=self.batchnorm, soft=self.soft,
                         options=self.method_options(method))

    def mask(self, method: str) -> MaskConfig:
        """``method``'s mask hyperparameters: its class's ``default_mask``, with the mask options given here."""
        given = {"init": self.mask_init, "threshold": self.threshold, "beta": self.beta,
                 "temperature": self.temperature}
        return replace(method_class(method).default_mask, **{k: v for k, v in given.items() if v is not None})

    def method_options(self, method: str) -> dict[str, Any]:
        """The keyword arguments ``method`` takes from the command line (its class's ``options_from_cli``)."""
        return method_class(method).options_from_cli(self.method_values)

    def run_folder(self, task: str, method: str) -> Path:
        tag = catalogue.option_tag(method, self.method_options(method))
        return self.out or self.runs_dir / run_folder_name(task, method, self.batchnorm, self.soft, tag)

    def sequence_folder(self, method: str) -> Path:
        return self.out or self.runs_dir / sequence_folder_name(method, self.batchnorm)
