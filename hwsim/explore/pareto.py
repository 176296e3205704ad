"""Pareto fronts (every objective minimised)."""

from __future__ import annotations

import numpy as np


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n points x m objectives, all minimised).

    A point is dominated when another is no worse in every objective and better in at least one;
    duplicates of a non-dominated point are all kept. Rows with a NaN are never on the front.
    Sort-based skyline: O(n log n + n * front size).

    Example:
        >>> pareto_mask(np.array([[1, 3], [2, 2], [3, 1], [2, 3]])).tolist()
        [True, True, True, False]
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError("values: expected a 2-D array (points x objectives)")
    n = len(values)
    keep = np.zeros(n, dtype=bool)
    finite = ~np.isnan(values).any(axis=1)
    idx = np.flatnonzero(finite)
    if not len(idx):
        return keep
    order = idx[np.lexsort(values[idx].T[::-1])]  # lexicographic: a dominator sorts before what it dominates
    front: list[int] = []
    for i in order:
        v = values[i]
        if front:
            f = values[front]
            dominated = np.any(np.all(f <= v, axis=1) & np.any(f < v, axis=1))
            if dominated:
                continue
        front.append(int(i))
    keep[front] = True
    return keep
