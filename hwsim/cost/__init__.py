"""The cost model: the mapping search per layer, one layer's cost, residency across layers and
inferences, what a task's masks cost, and a whole workload on a profile (:mod:`hwsim.cost.simulate`).
"""
