"""ksm: Kernel-wise Soft Mask learning on a frozen pretrained CNN.

Li Yang, Zhezhi He, Junshan Zhang, Deliang Fan, "KSM: Fast Multiple Task Adaption via
Kernel-wise Soft Mask Learning", CVPR 2021 (arXiv 2009.05668).

The package learns, for each new task, a small set of task-specific tensors (masks, BatchNorm,
classifier head) on top of one frozen backbone, and writes them as a run folder
(see ``docs/run-folder.md``) that :mod:`hwsim` costs on accelerator profiles.
"""

__version__ = "0.1.0"
