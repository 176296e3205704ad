"""Training: the one loop (:mod:`ksm.training.loop`), from a run spec to a run folder
(:mod:`ksm.training.pipeline`), the run folder's life cycle, BatchNorm recalibration, torchrun/DDP.
"""
