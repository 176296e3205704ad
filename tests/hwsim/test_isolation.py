"""hwsim never imports torch or ksm (docs/map.md): a hardware architect can use it without PyTorch."""

from __future__ import annotations

import subprocess
import sys


def test_import_hwsim_leaves_torch_out() -> None:
    code = ("import sys, hwsim, hwsim.ksm_sim, hwsim.cost.simulate, hwsim.cost.mask_cost, hwsim.cost.layer_cost, hwsim.workload.layers, hwsim.hardware.profile\n"
            "r = hwsim.simulate(hwsim.load_network('resnet18'), hwsim.load_profile('edge_npu'))\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'ksm'))]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
