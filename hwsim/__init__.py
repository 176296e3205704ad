"""hwsim: analytical cost of masked multi-task CNN inference on edge accelerator profiles.

Reads run folders (``run.json`` + ``masks.safetensors``) with ``json`` and ``safetensors.numpy``;
never imports torch or ``ksm``.

Example:
    >>> from hwsim import load_network, load_profile, simulate
    >>> result = simulate(load_network("resnet50"), load_profile("eyeriss"))
    >>> result.latency_s > 0
    True
"""

from hwsim.errors import InputError
from hwsim.workload.layers import Layer, Workload, bundled_networks, load_network, load_run
from hwsim.workload.topology import load_topology
from hwsim.hardware.profile import MemoryLevel, Profile, bundled_profiles, load_profile
from hwsim.cost.simulate import SimResult, results_document, simulate

__all__ = [
    "InputError", "Layer", "MemoryLevel", "Profile", "SimResult", "Workload", "bundled_networks",
    "bundled_profiles", "load_network", "load_profile", "load_run", "load_topology", "results_document",
    "simulate",
]
__version__ = "0.1.0"
