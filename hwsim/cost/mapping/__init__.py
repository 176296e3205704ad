"""The mapping search: for each layer, the spatial unrolling, loop order and tiles per memory level that
cost least, with access counts in closed form (ZigZag and its LOMA engine, Mei et al., IEEE TC 2021;
Symons et al., AICAS 2021).

Along ZigZag's seams, one idea per module:

- :mod:`~hwsim.cost.mapping.space`: the search space: a layer's loop bounds (``Shape``), the array's
  spatial unrollings (``Spatial``, :func:`~hwsim.cost.mapping.space.spatial_options`), the profile as the
  search reads it (``Arch``);
- :mod:`~hwsim.cost.mapping.loop_orders`: the temporal loops (prime factors, LOMA's factor limit) and
  every distinct order of them;
- :mod:`~hwsim.cost.mapping.tiles`: what a tile of an operand is (the projection of loop bounds) and
  whether tiles fit a memory, the two questions of the memory allocator;
- :mod:`~hwsim.cost.mapping.one_mapping`: the cost of one mapping (``evaluate``), the reference;
- :mod:`~hwsim.cost.mapping.batch_scorer`: the same cost for every loop order of many layers in one
  numpy pass;
- :mod:`~hwsim.cost.mapping.best_mapping`: the search and its cache (``search``, ``search_many``).

The rest of hwsim uses only the names below.
"""

from hwsim.cost.mapping.best_mapping import clear_caches, notation, search, search_many
from hwsim.cost.mapping.one_mapping import MappingCost
from hwsim.cost.mapping.space import Shape

__all__ = ["MappingCost", "Shape", "clear_caches", "notation", "search", "search_many"]
