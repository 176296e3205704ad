"""Expected size of a feature map run-length coded in DRAM (a profile's ``dram_compression``).

The format is Eyeriss v1's (Chen, Krishna, Emer, Sze, IEEE JSSC 52(1), 2017, §IV-B, "Exploit Data Statistics",
and Fig. 8): a feature map
is a stream of (run, level) pairs, the run counting the zeros before a value in ``run_bits`` bits and the level
holding the value in ``level_bits`` bits; pairs are packed into ``word_bits``-wide words, whatever bits a word has
left beside its pairs marking the last word of the code (Eyeriss: 5-bit runs, 16-bit levels, three pairs and a
one-bit flag in each 64-bit word). A run longer than the largest ``run_bits`` can count is cut: a pair with the
largest run and a zero level, then the count starts again.

The model (stated, not measured): the values are zero independently with probability ``z`` (the zeros of a map
after ReLU are clustered in practice, which gives longer runs and a smaller code: the expectation here is
then an upper bound for that cause). With ``R = 2**run_bits - 1``, a pair is closed by a nonzero value or by the
``R + 1``-th zero in a row, so the values per pair are the truncated geometric ``1 + z + ... + z**R`` and the
expected pairs per value ``(1 - z) / (1 - z**(R + 1))`` (``1 / (R + 1)`` at ``z = 1``). The expected size is
those pairs over the pairs per word, in words; the last word's padding and a trailing run of zeros (at most
one word per coded stream) are left out, so the size is an expectation per value, linear in the values.

Which maps are coded (§IV-B: "Except for the input data to the first layer of a CNN, all the fmaps are stored
in RLC compressed form in the DRAM"; the ofmaps are coded by the RLC encoder on their way out, the ifmaps
decoded on their way in; filters and partial sums are not): :class:`CodedMaps` says it per layer, and
:func:`hwsim.cost.simulate.simulate` decides it from the run's zeros and the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hwsim.workload.graph import Graph, host_written


@dataclass(frozen=True, slots=True)
class RunLengthCode:
    """A run-length code of feature maps in DRAM: ``run_bits`` per run of zeros, ``level_bits`` per value,
    packed in ``word_bits``-wide words (Eyeriss v1: 5, 16, 64; JSSC 2017, §IV-B)."""

    run_bits: int
    level_bits: int
    word_bits: int

    def __post_init__(self) -> None:
        if self.run_bits < 1 or self.level_bits < 1:
            raise ValueError(f"run_bits and level_bits must be >= 1, got {self.run_bits}, {self.level_bits}")
        if self.pairs_per_word < 1:
            raise ValueError(f"a {self.word_bits}-bit word holds no {self.run_bits + self.level_bits}-bit "
                             "(run, level) pair")

    @property
    def pairs_per_word(self) -> int:
        """(run, level) pairs in one word; the bits left over mark the last word (Eyeriss: 3 pairs, 1 bit)."""
        return self.word_bits // (self.run_bits + self.level_bits)

    def describe(self) -> str:
        """One line for tables."""
        return (f"run-length coded feature maps: {self.run_bits}-bit runs, {self.level_bits}-bit levels, "
                f"{self.pairs_per_word} pairs per {self.word_bits}-bit word")


@dataclass(frozen=True, slots=True)
class CodedMaps:
    """The zero fractions of the feature maps one layer reads from DRAM (``inputs``) and writes to it as final
    outputs (``outputs``), for the code; None: that map is not coded (it moves dense: the network's input
    image, or a map whose zeros the run does not give)."""

    inputs: float | None = None
    outputs: float | None = None

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs"):
            z = getattr(self, name)
            if z is not None and not 0.0 <= z <= 1.0:
                raise ValueError(f"the zero fraction of the {name} must be in [0, 1], got {z}")


DENSE = CodedMaps()  # nothing coded


def pairs_per_value(zero_fraction: float, run_bits: int) -> float:
    """Expected (run, level) pairs per value of a stream whose values are zero i.i.d. with ``zero_fraction``,
    runs counted in ``run_bits`` bits (see the module's model)."""
    z = float(zero_fraction)
    if not 0.0 <= z <= 1.0:
        raise ValueError(f"zero_fraction must be in [0, 1], got {zero_fraction}")
    longest = 2 ** run_bits  # values a pair covers at most: R zeros and its level
    if z == 1.0:
        return 1.0 / longest
    return (1.0 - z) / (1.0 - z ** longest)


def compressed_bits_per_value(code: RunLengthCode, zero_fraction: float) -> float:
    """Expected DRAM bits per value of a feature map with ``zero_fraction`` zeros, under ``code``; at
    ``zero_fraction = 0`` every value is a pair: ``word_bits / pairs_per_word`` (Eyeriss: 21.3 bits per 16-bit
    value, the format's overhead)."""
    return pairs_per_value(zero_fraction, code.run_bits) * code.word_bits / code.pairs_per_word


def compression_factor(code: RunLengthCode, zero_fraction: float, value_bits: int) -> float:
    """Coded over dense size of a feature map of ``value_bits``-wide values with ``zero_fraction`` zeros:
    the factor on its DRAM bytes (above 1 where the format's overhead beats the zeros it saves)."""
    if value_bits < 1:
        raise ValueError(f"value_bits must be >= 1, got {value_bits}")
    return compressed_bits_per_value(code, zero_fraction) / value_bits


def compressed_bytes(code: RunLengthCode, values: float, zero_fraction: float) -> float:
    """Expected bytes of ``values`` feature-map values with ``zero_fraction`` zeros, run-length coded."""
    if values < 0:
        raise ValueError(f"values must be >= 0, got {values}")
    return values * compressed_bits_per_value(code, zero_fraction) / 8


# Operators a feature map passes on its way to the layers that read it, for :func:`coded_maps`: views of the
# same values (reshape, split), an activation or BatchNorm fused into the producer's output stage (the map is
# written after them), and windowed pooling, whose output of a non-negative map is zero only where its whole
# window is (so the reader sees at most the written map's zeros). Any other operator (Add, Concat, Pad, global
# pooling...) makes a map whose zeros say nothing of the written one's.
PASSES_ZEROS = ("reshape", "split", "activation", "batchnorm", "pool")


def coded_maps(graph: Graph, layer_of_op: Mapping[int, str], input_zeros: Mapping[str, float],
               output_zeros: Mapping[str, float],
               kept: Callable[[tuple[str, ...]], bool]) -> dict[str, CodedMaps]:
    """Which feature maps each layer (the graph's MAC operators, ``layer_of_op``: op index -> layer name) moves
    coded, with what zeros, as Eyeriss stores them (Chen et al., JSSC 2017, §IV-B: every feature map in DRAM is
    coded except the network's input image).

    - Inputs: coded at the layer's ``input_zeros`` where the run gives them, unless the layer reads the
      network's input (the image, :func:`~hwsim.workload.graph.host_written`; a chain's gap is a map the
      network made, coded) or the memory plan keeps its input on chip (``kept``); else dense.
    - Outputs: coded at the layer's ``output_zeros`` where given; else at the input zeros of the layers that
      read the map, followed through :data:`PASSES_ZEROS`. A reader's zeros are the written map's, or fewer
      behind a pooling, so where several readers give them the largest is taken: the closest to the map's own
      that is still not above it (the coded size stays an upper bound of the expected one). No reader with
      zeros (the network's output, or an Add or Concat between): dense. Not coded where the plan keeps the map
      on chip.
    """
    host = host_written(graph)
    out: dict[str, CodedMaps] = {}
    for i, name in layer_of_op.items():
        op = graph.ops[i]
        z_in = input_zeros.get(name)
        if z_in is not None and (any(t in host for t in op.inputs) or kept(op.inputs)):
            z_in = None
        z_out = output_zeros.get(name)
        if z_out is None:
            z_out = _readers_zeros(graph, layer_of_op, input_zeros, op.outputs)
        if z_out is not None and kept(op.outputs):
            z_out = None
        out[name] = CodedMaps(inputs=z_in, outputs=z_out)
    return out


def _readers_zeros(graph: Graph, layer_of_op: Mapping[int, str], input_zeros: Mapping[str, float],
                   tensors: tuple[str, ...]) -> float | None:
    """The largest input zeros among the layers reading ``tensors`` through :data:`PASSES_ZEROS` (None: none)."""
    found: list[float] = []
    todo, seen = list(tensors), set(tensors)
    while todo:
        for j in graph.consumers.get(todo.pop(), ()):
            reader = graph.ops[j]
            if j in layer_of_op:
                if layer_of_op[j] in input_zeros:
                    found.append(input_zeros[layer_of_op[j]])
            elif reader.kind in PASSES_ZEROS:
                for t in reader.outputs:
                    if t not in seen:
                        seen.add(t)
                        todo.append(t)
    return max(found) if found else None
