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
from hwsim.work_budget import Estimate, machine_memory
from ksm.methods.registry import method_class
from ksm.training.run_names import run_folder_name, sequence_folder_name

if TYPE_CHECKING:
    from ksm.data.datasets import TaskData
    from ksm.methods.base import MaskConfig
    from ksm.training.pipeline import RunSpec

# The memory a training step holds, estimated before torch is imported (an upper bound, stated): each
# backbone's activation elements per input pixel, the sum of its convolution and linear outputs over the
# input's pixels in hwsim's layer tables at 224×224 (hwsim/networks/<arch>.json; vgg16_bn has vgg16's
# convolutions; tests/ksm/test_ksm_train.py holds them to the tables) ...
ACTIVATIONS_PER_PIXEL = {"mobilenet_v2": 133.2, "resnet18": 49.6, "resnet50": 221.6, "vgg16": 270.2,
                         "vgg16_bn": 270.2}
# ... each kept about 3 times in float32 (the convolution's output and the BatchNorm's for the backward pass,
# torchvision's ReLUs being in place, and its gradient), besides the 3-channel input image ...
KEPT_PER_ACTIVATION = 3
# ... and a built-in task held whole as uint8 gray images at the input size: at most the suite's largest
# (Fashion-MNIST, 70,000 images with its test split). An --data-root folder is read batch by batch.
SUITE_IMAGES = 70_000
MEMORY_FRACTION = 0.8  # the default cap: this share of the machine's memory (os.sysconf)


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
    log: tuple[str, ...]  # the scalar logs to keep: csv, tensorboard (ksm.training.train_log)
    # Hardware
    device: str
    threads: int | None
    nproc: int
    amp: bool
    max_memory: float | None  # GiB; None: MEMORY_FRACTION of the machine's memory
    # the resolved options, --config's and the command line's (ksm.config_file.resolved_config): run.json
    # train.config
    config: dict[str, Any] = field(default_factory=dict)
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

        # a task named twice (--task digits --task digits, or --task digits --suite default) is trained once,
        # in the order first named: twice, its one run folder would be locked against itself
        names = list(dict.fromkeys([task_name(t) for t in self.tasks]
                                   + (list(DEFAULT_SUITE) if self.suite == "default" else [])))
        if not names:
            raise click.UsageError("name a --task or --suite default")
        return names

    def load(self, task: str) -> TaskData:
        """The task's data at the run's input size (built-in tasks limited to ``--max-train`` images)."""
        from ksm.data.datasets import load_task

        return load_task(task, data_root=self.data_root, input_size=self.side(),
                         max_train=None if self.data_root or not self.max_train else self.max_train)

    def side(self) -> int:
        """The image side in pixels: ``--input-size``, else 64 for the built-in tasks and 224 with ``--data-root``."""
        return self.input_size or (224 if self.data_root else 64)

    def memory_estimate(self) -> Estimate:
        """The memory one training step holds at ``--input-size`` × ``--batch-size`` (the constants above),
        capped at ``--max-memory`` GiB, by default :data:`MEMORY_FRACTION` of this machine's."""
        pixels = self.side() ** 2
        per_image = pixels * (ACTIVATIONS_PER_PIXEL[self.arch] * KEPT_PER_ACTIVATION + 3) * 4
        cap = self.max_memory * 2**30 if self.max_memory else MEMORY_FRACTION * machine_memory() or float("inf")
        return Estimate.of("ksm-train", f"images a step at {self.side()}×{self.side()} px", self.batch_size,
                           bytes_per_unit=per_image, fixed_bytes=0 if self.data_root else SUITE_IMAGES * pixels,
                           cap=cap, option="--max-memory", capped="bytes")

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
