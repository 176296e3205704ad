"""Session set-up shared by tests/ and benchmarks/: under pytest-xdist (``pytest -n auto``, the README's test
command) each worker gets one torch/OpenMP thread, so the workers share the cores instead of each spinning
as many threads as there are cores (oversubscribed OpenMP made some training tests 10-20x slower)."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, "1")
