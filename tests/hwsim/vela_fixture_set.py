"""One folder of Vela reference layers (``fixtures/vela/fresh``, ``fixtures/vela/fresh2``): its cases, each case's
record, hwsim's result on its ONNX twin and the ratio of their cycles, shared by the tests of each folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hwsim import load_profile, simulate
from hwsim.cost.simulate import SimResult
from hwsim.workload.onnx_reader import load_onnx


@dataclass(frozen=True)
class VelaFixtureSet:
    """The ``NAME.json`` records (Vela's cycles) and ``NAME.onnx`` twins of ``folder``, costed on ``ethos_u55``."""

    folder: Path

    @property
    def cases(self) -> tuple[str, ...]:
        return tuple(sorted(p.stem for p in self.folder.glob("*.json")))

    def fixture(self, name: str) -> dict:
        return json.loads((self.folder / f"{name}.json").read_text(encoding="utf-8"))

    def simulated(self, name: str) -> tuple[dict, SimResult]:
        rec = self.fixture(name)
        work, _ = load_onnx(self.folder / rec["onnx"]["file"], warn=False)
        return rec, simulate(work, load_profile("ethos_u55"))

    def ratio(self, name: str) -> float:
        """hwsim's total cycles over Vela's."""
        rec, result = self.simulated(name)
        return sum(c.cycles for c in result.layers) / rec["total_cycles"]

    def stated_and_measured(self, misses: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
        """Each expected failure's reason opens with the ratio measured when it was written ('N.NNx ...'):
        those ratios, and today's rounded the same way."""
        stated = {name: float(reason.split("x", 1)[0]) for name, reason in misses.items()}
        return stated, {name: round(self.ratio(name), 2) for name in misses}
