"""Property tests of the memory plan over random graphs (:mod:`hwsim.cost.memory_plan`).

Hypothesis draws random networks as small specs (a list of steps, each naming the tensors it reads by
their index), and :func:`build` turns a spec into the layers and the :class:`~hwsim.workload.graph.Graph`
hwsim costs: convolutions (dense or depthwise, strided, padded), element-wise Add of two same-shape tensors,
MaxPool, Concat along channels, Relu, GlobalAveragePool, and a Flatten -> linear head. The invariants:

1. on a chain the graph path gives what hwsim gave before graphs (an oracle of the old rule);
2. more on-chip memory never means more off-chip activation traffic;
3. a tensor is read from the level it was written to;
4. on graphs of vector operators, bytes written and read add up to the tensors' sizes;
5. the plan's peak covers every operator's working set, and a tiny activation memory gives the cold cost;
6. (not in the issue's list) the buffers the plan keeps on chip fit the level beside each working set.

Hypothesis found three counter-examples in a first version of the plan (a greedy first-fit that was not
monotone in capacity; a conv reading and writing slices of one concatenation staged by one slice; a kept tensor
counted by a strided window's footprint); the plan was changed and each minimal example stays here as an
explicit ``@example``. A fourth, from the mapping search, is a strict expected failure with its reason.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hwsim import Layer, Workload, load_profile, simulate
from hwsim.cost.layer_cost import cost_of_mapping, input_elems, output_elems, shape_of
from hwsim.cost.mapping import search
from hwsim.cost.memory_plan import activation_level, plan_memory
from hwsim.cost.operator_cost import executions, operator_cost
from hwsim.cost.simulate import layer_profiles
from hwsim.hardware.profile import Profile
from hwsim.workload.graph import Graph, Op, feeds

PROFILES = ("edge_npu", "edge_tpu", "eyeriss", "ethos_u55", "zigzag_eyeriss_like", "zigzag_tpu_like")
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def real(name: str) -> Profile:
    return load_profile(name)


def with_activation_size(profile: Profile, size: float) -> Profile:
    """``profile`` with its activation level (:func:`activation_level`) holding ``size`` bytes."""
    act = activation_level(profile)
    levels = tuple(dataclasses.replace(lv, size_bytes=size) if lv is act else lv for lv in profile.levels)
    return dataclasses.replace(profile, levels=levels)


# --------------------------------------------------------------------------------------------
# Random networks. A spec is (image (C, H, W), steps): tensor 0 is the image, each step appends one tensor
# (the head appends two: the flattened vector and the logits) and names the tensors it reads by index.
#   ("conv", src, out_channels, kernel, stride, pad, depthwise)   ("add", a, b)
#   ("pool", src, window, stride)   ("concat", a, b)   ("relu", src)   ("gap", src)
#   ("head", src, classes): Flatten then a linear layer, only last

CHANNELS = (4, 8, 16, 32, 64, 128)
ALL_KINDS = ("conv", "conv", "add", "pool", "concat", "relu", "gap")
VECTOR_KINDS = ("add", "pool", "relu", "gap")


def out_hw(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


@st.composite
def networks(draw: st.DrawFn, kinds: Sequence[str] = ALL_KINDS, head: bool = True,
             conv_strides: Sequence[int] = (1, 2), max_steps: int = 9) -> tuple:
    """A random network spec: ``kinds`` the operators drawn (conv twice as often by default), a Flatten ->
    linear head at the end or not, conv strides among ``conv_strides``."""
    image = (draw(st.sampled_from((3, 8, 16, 32))), draw(st.integers(4, 64)), draw(st.integers(4, 64)))
    shapes: list[tuple[int, ...]] = [image]
    steps: list[tuple] = []
    for _ in range(draw(st.integers(1, max_steps))):
        maps = [i for i, s in enumerate(shapes) if len(s) == 3]
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            src = draw(st.sampled_from(maps))
            c, h, w = shapes[src]
            k = draw(st.sampled_from((1, 3)))
            s = draw(st.sampled_from(conv_strides))
            p = draw(st.sampled_from((0, k // 2)))
            depthwise = draw(st.booleans())
            if min(h, w) + 2 * p < k:
                k, p = 1, 0
            out = c if depthwise else draw(st.sampled_from(CHANNELS))
            steps.append(("conv", src, out, k, s, p, depthwise))
            shapes.append((out, out_hw(h, k, s, p), out_hw(w, k, s, p)))
        elif kind == "add":
            a = draw(st.integers(0, len(shapes) - 1))
            b = draw(st.sampled_from([i for i, s in enumerate(shapes) if s == shapes[a]]))
            steps.append(("add", a, b))
            shapes.append(shapes[a])
        elif kind == "pool":
            src = draw(st.sampled_from(maps))
            c, h, w = shapes[src]
            window = draw(st.sampled_from((2, 3)))
            stride = draw(st.sampled_from((1, 2)))
            if min(h, w) < window:
                window = stride = 1
            steps.append(("pool", src, window, stride))
            shapes.append((c, (h - window) // stride + 1, (w - window) // stride + 1))
        elif kind == "concat":
            a = draw(st.sampled_from(maps))
            b = draw(st.sampled_from([i for i in maps if shapes[i][1:] == shapes[a][1:]]))
            steps.append(("concat", a, b))
            shapes.append((shapes[a][0] + shapes[b][0], *shapes[a][1:]))
        elif kind == "gap":
            src = draw(st.sampled_from(maps))
            steps.append(("gap", src))
            shapes.append((shapes[src][0], 1, 1))
        else:
            src = draw(st.integers(0, len(shapes) - 1))
            steps.append(("relu", src))
            shapes.append(shapes[src])
    if head and draw(st.booleans()):
        maps = [i for i, s in enumerate(shapes) if len(s) == 3 and math.prod(s) <= 2**18]
        steps.append(("head", draw(st.sampled_from(maps)), draw(st.sampled_from((10, 100, 1000)))))
    return image, tuple(steps)


def build(spec: tuple) -> tuple[tuple[Layer, ...], Graph]:
    """The layers and the graph of a spec (see :func:`networks`)."""
    image, steps = spec
    names = ["image"]
    tensors: dict[str, tuple[int, ...]] = {"image": tuple(image)}
    ops: list[Op] = []
    layers: list[Layer] = []

    def add(name: str, shape: tuple[int, ...]) -> str:
        names.append(name)
        tensors[name] = tuple(shape)
        return name

    for n, step in enumerate(steps):
        kind, *args = step
        name = f"{kind}{n}"
        if kind == "conv":
            src, out, k, s, p, depthwise = args
            c, h, w = tensors[names[src]]
            layer = Layer(name, "conv", c, out, (k, k), (s, s), (p, p), c if depthwise else 1, (h, w),
                          (out_hw(h, k, s, p), out_hw(w, k, s, p)))
            layers.append(layer)
            t = add(f"t{n}", (out, *layer.output_hw))
            ops.append(Op(name, "conv", (names[src],), (t,), "Conv", layer=name))
        elif kind == "add":
            a, b = (names[i] for i in args)
            t = add(f"t{n}", tensors[a])
            ops.append(Op(name, "elementwise", (a, b), (t,), "Add"))
        elif kind == "pool":
            src, window, stride = args
            c, h, w = tensors[names[src]]
            t = add(f"t{n}", (c, (h - window) // stride + 1, (w - window) // stride + 1))
            ops.append(Op(name, "pool", (names[src],), (t,), "MaxPool", window=(window, window),
                          stride=(stride, stride)))
        elif kind == "concat":
            a, b = (names[i] for i in args)
            t = add(f"t{n}", (tensors[a][0] + tensors[b][0], *tensors[a][1:]))
            ops.append(Op(name, "concat", (a, b), (t,), "Concat"))
        elif kind == "gap":
            src = names[args[0]]
            t = add(f"t{n}", (tensors[src][0], 1, 1))
            ops.append(Op(name, "global_pool", (src,), (t,), "GlobalAveragePool"))
        elif kind == "relu":
            src = names[args[0]]
            t = add(f"t{n}", tensors[src])
            ops.append(Op(name, "activation", (src,), (t,), "Relu"))
        elif kind == "head":
            src, classes = names[args[0]], args[1]
            flat = add(f"t{n}", (math.prod(tensors[src]),))
            ops.append(Op(f"flatten{n}", "reshape", (src,), (flat,), "Flatten"))
            layer = Layer(name, "linear", tensors[flat][0], classes, (1, 1))
            layers.append(layer)
            logits = add(f"logits{n}", (classes,))
            ops.append(Op(name, "linear", (flat,), (logits,), "Gemm", layer=name))
        else:
            raise AssertionError(kind)
    consumed = {t for op in ops for t in op.inputs}
    outputs = tuple(t for t in names[1:] if t not in consumed)
    return tuple(layers), Graph(ops=tuple(ops), tensors=tensors, inputs=("image",), outputs=outputs)


def workload(spec: tuple) -> Workload:
    layers, graph = build(spec)
    return Workload("random", layers, graph=graph)


def planned(work: Workload, profile: Profile, batch: int):
    how = executions(work.graph)
    plan = plan_memory(work.graph, how, {la.name: la for la in work.layers}, profile, batch)
    return how, plan


def costed(graph: Graph, how: Sequence[str]) -> list[int]:
    """Indices of the operators that have a LayerCost, in the order ``simulate`` returns them."""
    return [i for i, h in enumerate(how) if h in ("mac", "vector")]


def writers(graph: Graph, how: Sequence[str], tensor: str) -> set[int]:
    """The costed operators that write (a slice of) ``tensor``'s bytes: its producer, or through a view or a
    fused activation, the producers of what that operator reads."""
    p = graph.producer.get(tensor)
    if p is None:
        return set()
    if how[p] in ("mac", "vector"):
        return {p}
    return set().union(*(writers(graph, how, t) for t in graph.ops[p].inputs))


def activation_dram_bytes(result) -> float:
    """DRAM bytes read and written for the operands ``inputs`` and ``outputs``, over every costed operator."""
    dram = result.profile.dram.name
    return sum(v for c in result.layers for (lv, o), v in [*c.read_bytes.items(), *c.write_bytes.items()]
               if lv == dram and o in ("inputs", "outputs"))


# --------------------------------------------------------------------------------------------
# 1. A chain: the rule hwsim applied before graphs.


@st.composite
def chains(draw: st.DrawFn) -> tuple[Layer, ...]:
    """Conv layers with padding 0 and stride 1 (a conv's input footprint is then its whole input tensor),
    each reading the previous one's output or, now and then, a tensor of its own."""
    layers: list[Layer] = []
    for n in range(draw(st.integers(1, 7))):
        k = draw(st.sampled_from((1, 3)))
        prev = layers[-1] if layers else None
        if prev is not None and min(prev.output_hw) >= k and draw(st.integers(0, 4)) > 0:
            c, hw = prev.out_channels, prev.output_hw
        else:
            c, hw = draw(st.sampled_from(CHANNELS)), (draw(st.integers(3, 128)), draw(st.integers(3, 128)))
        out = draw(st.sampled_from((*CHANNELS, 256)))
        result_hw = (hw[0] - k + 1, hw[1] - k + 1)
        layers.append(Layer(f"c{n}", "conv", c, out, (k, k), (1, 1), (0, 0), 1, hw, result_hw))
    return tuple(layers)


def old_rule(layers: Sequence[Layer], profile: Profile, batch: int) -> list[str]:
    """The layers whose output stayed on chip before graphs: the next layer reads it and the producing and
    the consuming layer's input and output both fit the activation level."""
    size = activation_level(profile).size_bytes
    pb = profile.precision_bits
    in_b = [input_elems(la) * pb.inputs / 8 * batch for la in layers]
    out_b = [output_elems(la) * pb.outputs / 8 * batch for la in layers]
    return [a.name for i, (a, b) in enumerate(zip(layers, layers[1:]))
            if feeds(a, b) and in_b[i] + out_b[i] <= size and out_b[i] + out_b[i + 1] <= size]


def hand_graph(layers: Sequence[Layer]) -> Graph:
    """The chain written by hand: tensors named ``x0, x1...``, the first layer's input the graph's input (the
    tensor the host writes: ``host_written``), every tensor no layer reads a graph output. A gap's tensor,
    which no layer writes, is no graph input: a pooling or branch the list does not show made it, as in
    ``chain_graph``."""
    ops: list[Op] = []
    tensors: dict[str, tuple[int, ...]] = {}
    current: str | None = None
    for n, layer in enumerate(layers):
        if current is None or not feeds(layers[n - 1], layer):
            current = f"x{len(tensors)}"
            tensors[current] = (layer.in_channels, *layer.input_hw)
        out = f"x{len(tensors)}"
        tensors[out] = (layer.out_channels, *layer.output_hw)
        ops.append(Op(f"op{n}", "conv", (current,), (out,), "Conv", layer=layer.name))
        current = out
    consumed = {t for op in ops for t in op.inputs}
    return Graph(ops=tuple(ops), tensors=tensors, inputs=("x0",) if ops else (),
                 outputs=tuple(t for t in tensors if t not in consumed))


@SETTINGS
@given(layers=chains(), name=st.sampled_from(PROFILES), batch=st.sampled_from((1, 2, 4)))
def test_chain_keeps_what_the_rule_before_graphs_kept(layers, name, batch) -> None:
    """On a chain the plan keeps exactly the outputs the rule before graphs kept, and a graph written by hand
    for the same chain (other tensor names, not flagged as a chain) costs every layer the same."""
    profile = real(name)
    expected = old_rule(layers, profile, batch)
    chain = simulate(Workload("x", layers), profile, batch=batch)
    graph = simulate(Workload("x", layers, graph=hand_graph(layers)), profile, batch=batch)
    assert chain.residency["graph"] == "chain" and graph.residency["graph"] == "graph"
    assert chain.residency["outputs_kept_on_chip"] == expected
    # the hand-built graph names its operators op0, op1...: compare by position
    by_position = [f"op{n}" for n, la in enumerate(layers) if la.name in expected]
    assert graph.residency["outputs_kept_on_chip"] == by_position
    assert len(chain.layers) == len(graph.layers) == len(layers)
    for a, b in zip(chain.layers, graph.layers):
        assert a.read_bytes == b.read_bytes
        assert a.write_bytes == b.write_bytes
        assert a.energy_pj == b.energy_pj
        assert (a.cycles, a.inputs_at, a.outputs_at) == (b.cycles, b.inputs_at, b.outputs_at)


# --------------------------------------------------------------------------------------------
# 2. More on-chip memory never means more off-chip activation traffic.

SCALES = (1.0, 1.5, 2.0, 4.0, 16.0)


def plan_dram_bytes(graph: Graph, how: Sequence[str], plan, profile: Profile, batch: int) -> float:
    """The off-chip activation bytes the plan implies: every tensor a costed operator reads or writes from
    off-chip memory, at its size (what a vector operator moves; a layer moves its mapping's bytes)."""
    dram = profile.dram
    return sum(graph.elems(t) * batch * profile.precision_bits.outputs / 8
               for i in costed(graph, how) for t in (*graph.ops[i].inputs, *graph.ops[i].outputs)
               if plan.level_of[t] is dram)


def critical_sizes(work: Workload, profile: Profile, batch: int) -> list[float]:
    """Activation-level sizes where the plan's choices can flip: every step's occupancy of the plans at a few
    sizes (a buffer placed last at a step fits exactly there), and half a byte less, iterated twice."""
    base = activation_level(profile).size_bytes
    sizes = {base * f for f in (0.25, 1.0, 4.0, 1e6)}
    for _ in range(2):
        for size in sorted(sizes):
            occupancy = planned(work, with_activation_size(profile, size), batch)[1].occupancy
            sizes |= {o for o in occupancy if o > 0} | {o - 0.5 for o in occupancy if o > 0.5}
    return sorted(sizes)


# Found by hypothesis (minimal after shrinking) with this test's own strategy run for 3,000 examples:
# t0 = MaxPool(image) is read twice by the last operator, Add(t0, t0), so it lives across the whole network;
# t2 = Add(image, image) is read by the depthwise conv4 only. On edge_npu with the activation level at 327.5 B
# t0 does not fit at step 2 (128 + 128 + 72 = 328 B) and t2 is kept: 1,384 B of activations move off chip.
# At 328 B t0 fits first, in execution order, and crowds t2 out at step 3: 1,424 B move off chip.
GREEDY = ((8, 4, 4), (("pool", 0, 2, 1), ("pool", 0, 2, 1), ("add", 0, 0), ("conv", 0, 4, 1, 1, 0, False),
                      ("conv", 3, 8, 1, 1, 0, True), ("conv", 0, 4, 1, 1, 0, False), ("add", 1, 1)))


@SETTINGS
@example(spec=GREEDY, name="edge_npu", batch=1, scales=[1.0, 1.5])
@given(spec=networks(), name=st.sampled_from(PROFILES), batch=st.sampled_from((1, 2, 4)),
       scales=st.lists(st.sampled_from(SCALES), min_size=2, max_size=3, unique=True).map(sorted))
def test_more_activation_memory_never_moves_more_off_chip(spec, name, batch, scales) -> None:
    """The plan's off-chip activation bytes (:func:`plan_dram_bytes`) never grow as the activation level grows:
    from the profile's own size scaled by ``scales``, and over every size where the plan's choices can flip
    (:func:`critical_sizes`). ``GREEDY`` is the graph on which a greedy first-fit in execution order spilled more
    at 328 B than at 327.5 B (an early, long-lived buffer that starts to fit crowds out a later one); the plan
    counts every buffer alive across a step, so no decision depends on another. The mapping search is held out:
    it minimises energy, not off-chip bytes (the next test)."""
    base = real(name)
    work = workload(spec)
    how = executions(work.graph)
    size = activation_level(base).size_bytes
    sizes = sorted({*critical_sizes(work, base, batch), *(size * f for f in scales)})
    moved = [plan_dram_bytes(work.graph, how, planned(work, with_activation_size(base, s), batch)[1], base, batch)
             for s in sizes]
    assert all(b <= a for a, b in zip(moved, moved[1:])), list(zip(sizes, moved))


# Once a strict expected failure: one 3x3 conv (64 -> 64 channels, 19 x 29 input) on eyeriss read its 70,528 B
# input from DRAM once with glb_108KB at 110,592 B but 80,256 B with it scaled by 1.5 (the energy-optimal mapping
# re-fetched part of it). Since the search scores both LOMA's common cut and ZigZag's per-operand cut of a
# shared level (issue 24), it holds; kept as a regression test.
def test_a_larger_level_can_change_the_mapping_and_its_off_chip_reads() -> None:
    """Found by hypothesis on a two-layer chain, reduced by hand to its second layer: the plan is not involved
    (the input and the output are the network's), the mapping search minimises energy, not off-chip bytes."""
    base = real("eyeriss")
    work = Workload("x", (Layer("c", "conv", 64, 64, (3, 3), (1, 1), (0, 0), 1, (19, 29), (17, 27)),))
    size = activation_level(base).size_bytes
    traffic = [activation_dram_bytes(simulate(work, with_activation_size(base, size * f)))
               for f in (1.0, 1.5)]
    assert traffic[1] <= traffic[0], traffic


# --------------------------------------------------------------------------------------------
# 3. A tensor is read from the level it was written to.


@SETTINGS
@given(spec=networks(), name=st.sampled_from(PROFILES), batch=st.sampled_from((1, 2, 4)))
def test_every_tensor_is_read_where_it_was_written(spec, name, batch) -> None:
    """For every costed operator and every tensor it reads: the plan's level for the tensor is where each
    operator that wrote its bytes wrote it (the writer's ``outputs_at``; through a Concat, a Flatten or a
    fused Relu, each producer of what that operator reads), off chip when nothing of the graph wrote it, and
    the reader's ``inputs_at`` names it. ``simulate``'s kept outputs are the plan's. A vector operator's
    traffic is keyed exactly by those levels and sums to the tensors' bytes. A layer whose input (output) is
    on chip reads (reads and writes) none of its inputs (outputs) off chip; one whose output is off chip
    writes at least the tensor's bytes there, one whose input is off chip reads some of it there (a strided
    window may skip rows)."""
    profile = real(name)
    work = workload(spec)
    graph = work.graph
    result = simulate(work, profile, batch=batch)
    how, plan = planned(work, profile, batch)
    act, dram, pb = activation_level(profile), profile.dram, profile.precision_bits
    order = costed(graph, how)
    assert len(result.layers) == len(order)
    cost = dict(zip(order, result.layers))
    kept = [graph.ops[i].name for i in order if all(plan.level_of[t] is act for t in graph.ops[i].outputs)]
    assert result.residency["outputs_kept_on_chip"] == kept
    for t in graph.tensors:  # tensors sharing bytes share a level
        assert plan.level_of[t] is plan.level_of[plan.buffer_of[t]]
        assert plan.level_of[t] in (act, dram)
    for i in order:
        op, c = graph.ops[i], cost[i]
        assert c.name == op.name
        for t in op.inputs:
            level = plan.level_of[t]
            ws = writers(graph, how, t)
            if not ws:
                assert level is dram, t
            for w in ws:
                assert cost[w].outputs_at == level.name, (t, graph.ops[w].name)
            assert level.name in c.inputs_at.split("+")
        assert c.inputs_at == "+".join(dict.fromkeys(plan.level_of[t].name for t in op.inputs))
        assert c.outputs_at == "+".join(dict.fromkeys(plan.level_of[t].name for t in op.outputs))
        if how[i] == "vector":
            reads: dict[tuple[str, str], float] = {}
            for t in op.inputs:
                key = (plan.level_of[t].name, "inputs")
                reads[key] = reads.get(key, 0.0) + graph.elems(t) * pb.inputs / 8 * batch
            writes = {(plan.level_of[t].name, "outputs"): graph.elems(t) * pb.outputs / 8 * batch
                      for t in op.outputs}
            assert c.read_bytes == pytest.approx(reads)
            assert c.write_bytes == pytest.approx(writes)
        else:
            (t_in,), (t_out,) = op.inputs, op.outputs
            dram_in = c.read_bytes.get((dram.name, "inputs"), 0.0)
            dram_out = c.write_bytes.get((dram.name, "outputs"), 0.0)
            if plan.level_of[t_in] is act:
                assert dram_in == 0.0
            else:
                assert dram_in > 0.0
            if plan.level_of[t_out] is act:
                assert dram_out == 0.0
                assert c.read_bytes.get((dram.name, "outputs"), 0.0) == 0.0
            else:
                assert dram_out >= graph.elems(t_out) * pb.outputs / 8 * batch * (1 - 1e-12)


# --------------------------------------------------------------------------------------------
# 4. Bytes written and read add up, on graphs of vector operators only.


@SETTINGS
@given(spec=networks(VECTOR_KINDS, head=False), name=st.sampled_from(PROFILES),
       batch=st.sampled_from((1, 2, 4)))
def test_vector_graph_bytes_add_up(spec, name, batch) -> None:
    """On a graph of Add, MaxPool, GlobalAveragePool and Relu only (no layer, no view), with every byte count
    at the profile's precision and batch, summed over all levels:

    - bytes written (operand ``outputs``) == the bytes of every tensor a costed operator writes (a Relu fused
      into its producer writes nothing of its own: its output is its producer's bytes);
    - bytes read (operand ``inputs``) == sum over tensors of its bytes times the number of costed operators
      reading it (an operator reading one tensor twice, Add(x, x), counts twice);
    - hence, with every written buffer read or a graph output: written == (each buffer read at least once,
      counted once) + (graph outputs) - (graph inputs: the image, read but never written);
    - and per level, each level receives exactly the writes and serves exactly the reads of the tensors the
      plan placed there.
    """
    profile = real(name)
    work = workload(spec)
    graph = work.graph
    result = simulate(work, profile, batch=batch)
    how, plan = planned(work, profile, batch)
    assert set(how) <= {"vector", "fused"}
    pb = profile.precision_bits

    def nbytes(t: str) -> float:
        return graph.elems(t) * batch * pb.outputs / 8  # inputs and outputs share a width in every profile

    assert pb.inputs == pb.outputs
    written = sum(v for c in result.layers for (_, o), v in c.write_bytes.items() if o == "outputs")
    read = sum(v for c in result.layers for (_, o), v in c.read_bytes.items() if o == "inputs")
    order = costed(graph, how)
    assert written == pytest.approx(sum(nbytes(t) for i in order for t in graph.ops[i].outputs))
    assert read == pytest.approx(sum(nbytes(t) for i in order for t in graph.ops[i].inputs))
    # conservation over buffers: a fused Relu's output is its input's bytes
    buffer = plan.buffer_of
    read_buffers = {buffer[t] for i in order for t in graph.ops[i].inputs}
    out_buffers = {buffer[t] for t in graph.outputs} - read_buffers
    in_buffers = {buffer[t] for t in graph.inputs}
    size = {b: max(nbytes(t) for t in graph.tensors if buffer[t] == b) for b in set(buffer.values())}
    assert written == pytest.approx(sum(size[b] for b in read_buffers) + sum(size[b] for b in out_buffers)
                                    - sum(size[b] for b in in_buffers))
    for level in profile.levels:
        w = sum(v for c in result.layers for (lv, o), v in c.write_bytes.items() if lv == level.name)
        r = sum(v for c in result.layers for (lv, o), v in c.read_bytes.items() if lv == level.name)
        assert w == pytest.approx(sum(nbytes(t) for i in order for t in graph.ops[i].outputs
                                      if plan.level_of[t] is level))
        assert r == pytest.approx(sum(nbytes(t) for i in order for t in graph.ops[i].inputs
                                      if plan.level_of[t] is level))


# --------------------------------------------------------------------------------------------
# 5. The peak covers every working set; a tiny activation memory gives the cold, all-off-chip cost.


def working_set(op: Op, how: str, graph: Graph, layers: dict[str, Layer], profile: Profile,
                batch: int) -> float:
    """The bytes an operator stages: each distinct tensor it reads (a layer's input by the footprint its
    window reads) and each it writes (a layer's output by its output size)."""
    pb = profile.precision_bits
    layer = layers.get(op.layer) if how == "mac" and op.layer else None
    ins = sum((input_elems(layer) if layer else graph.elems(t)) * pb.inputs / 8 * batch
              for t in dict.fromkeys(op.inputs))
    outs = sum((output_elems(layer) if layer else graph.elems(t)) * pb.outputs / 8 * batch
               for t in dict.fromkeys(op.outputs))
    return ins + outs


def check_peak(spec: tuple, name: str, batch: int) -> None:
    """Every costed operator's step occupancy, and ``plan.peak_bytes``, are at least its working set."""
    profile = real(name)
    work = workload(spec)
    how, plan = planned(work, profile, batch)
    layers = {la.name: la for la in work.layers}
    for i in costed(work.graph, how):
        need = working_set(work.graph.ops[i], how[i], work.graph, layers, profile, batch)
        assert plan.occupancy[i] >= need * (1 - 1e-12), (work.graph.ops[i].name, plan.occupancy[i], need)
        assert plan.peak_bytes >= need * (1 - 1e-12), (work.graph.ops[i].name, plan.peak_bytes, need)


# Found by hypothesis (minimal): conv0 reads the image and writes t0, and Concat(image, t0) makes the image,
# t0 and the concatenation one buffer, so conv0's input and output are two slices of one buffer; the plan
# stages that buffer once, by the larger slice (48 B), where the operator holds both (96 B).
CONCAT_SLICES = ((3, 4, 4), (("conv", 0, 3, 1, 1, 0, True), ("concat", 0, 1)))


@SETTINGS
@example(spec=CONCAT_SLICES, name="edge_npu", batch=1)
@given(spec=networks(), name=st.sampled_from(PROFILES), batch=st.sampled_from((1, 2, 4)))
def test_peak_covers_every_working_set(spec, name, batch) -> None:
    """``plan.peak_bytes`` is at least every costed operator's staged working set (:func:`working_set`: each
    distinct tensor it reads and writes), and so is the occupancy of that operator's step."""
    check_peak(spec, name, batch)


@SETTINGS
@given(spec=networks(), name=st.sampled_from(PROFILES), batch=st.sampled_from((1, 2)))
def test_tiny_activation_memory_is_the_cold_cost(spec, name, batch) -> None:
    """With an activation level of one byte nothing stays on chip, and every operator costs what it costs with
    every tensor off chip: each layer its mapping's cost alone, each vector operator its cost reading and
    writing off-chip memory."""
    profile = with_activation_size(real(name), 1.0)
    work = workload(spec)
    graph = work.graph
    how, plan = planned(work, profile, batch)
    assert plan.on_chip == ()
    assert all(level is profile.dram for level in plan.level_of.values())
    result = simulate(work, profile, batch=batch)
    assert result.residency["outputs_kept_on_chip"] == []
    layers = {la.name: la for la in work.layers}
    off_chip = dict.fromkeys(graph.tensors, profile.dram)
    order = costed(graph, how)
    assert len(result.layers) == len(order)
    for i, got in zip(order, result.layers):
        op = graph.ops[i]
        if how[i] == "mac":
            layer = layers[op.layer]
            shape = shape_of(layer, batch)
            own = layer_profiles(graph, profile)[layer.name]  # hwsim.cost.mapping.bursts: input blocks
            cold = cost_of_mapping(layer, shape, search(shape, own), own, None, batch)
        else:
            cold = operator_cost(op, graph, profile, off_chip, batch)
        for f in ("read_bytes", "write_bytes", "energy_pj", "cycles", "stall_cycles", "onload_cycles",
                  "offload_cycles", "vector_cycles", "macs", "bound"):
            assert getattr(got, f) == getattr(cold, f), (op.name, f)
        assert got.outputs_at == got.inputs_at == profile.dram.name


# --------------------------------------------------------------------------------------------
# 6. (beyond the list) The plan never keeps more on chip than the level holds.


def check_capacity(spec: tuple, name: str, batch: int) -> None:
    """At every size where the plan's choices can flip (:func:`critical_sizes`), at every costed operator's
    step where a buffer is kept on chip: the kept buffers alive then (whole: a concatenation's every slice, a
    tensor a strided window reads only rows of) plus what the operator stages of the tensors that are not
    kept (a layer's input by its window's footprint) fit the activation level (memory_plan's docstring: "each
    on chip when at every step of its life the working set plus every buffer already kept there, plus itself,
    fits")."""
    work = workload(spec)
    graph = work.graph
    layers = {la.name: la for la in work.layers}
    for s in critical_sizes(work, real(name), batch):
        profile = with_activation_size(real(name), s)
        how, plan = planned(work, profile, batch)
        pb = profile.precision_bits
        buffer = plan.buffer_of
        size: dict[str, float] = {}
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for t in graph.tensors:
            size[buffer[t]] = max(size.get(buffer[t], 0.0), graph.elems(t) * batch * pb.outputs / 8)
        for i, op in enumerate(graph.ops):
            for t in op.outputs:
                first[buffer[t]] = min(first.get(buffer[t], i), i)
            for t in op.inputs:
                last[buffer[t]] = max(last.get(buffer[t], i), i)
        for i in costed(graph, how):
            op = graph.ops[i]
            kept = {b for b in plan.on_chip if first[b] <= i <= last[b]}
            if not kept:
                continue  # nothing kept: the operator streams what does not fit, nothing is claimed
            layer = layers.get(op.layer) if how[i] == "mac" else None
            total = sum(size[b] for b in kept)
            total += sum((input_elems(layer) if layer else graph.elems(t)) * pb.inputs / 8 * batch
                         for t in dict.fromkeys(op.inputs) if buffer[t] not in kept)
            total += sum((output_elems(layer) if layer else graph.elems(t)) * pb.outputs / 8 * batch
                         for t in dict.fromkeys(op.outputs) if buffer[t] not in kept)
            assert total <= s, (s, op.name, total, plan.occupancy[i], sorted(kept))


# Found by hypothesis (minimal): t0 (48 B) is kept on chip until conv3, a 1x1 stride-2 conv whose window reads
# one row and column in two; the plan stages t0 at conv3 by that footprint (12 B) beside conv3's 128 B output:
# 140 B, under a 144 B level; the whole of t0 sits in the level then, 176 B.
STRIDED = ((3, 4, 4), (("conv", 0, 3, 1, 1, 0, True), ("add", 0, 0), ("add", 0, 0),
                       ("conv", 1, 32, 1, 2, 0, False)))


@SETTINGS
@example(spec=STRIDED, name="edge_npu", batch=1)
@given(spec=networks(), name=st.sampled_from(PROFILES), batch=st.sampled_from((1, 2, 4)))
def test_plan_never_overfills_the_activation_level(spec, name, batch) -> None:
    """:func:`check_capacity` on any random graph."""
    check_capacity(spec, name, batch)
