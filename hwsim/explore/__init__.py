"""Design-space exploration: sweep profiles and mask parameters over workloads (``ksm-explore``).

One point is one call of :func:`hwsim.explore.point.cost_point` (the adapter to ``hwsim.cost.simulate.simulate``);
sweeps fan out over a process pool or a dask.distributed cluster; results are a tidy pandas table.
"""
