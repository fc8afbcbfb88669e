"""Slow, obviously right oracles for the engine tests."""

from __future__ import annotations

import numpy as np


def pair_histogram(start_t, stop_t, bins: int, width: int, start_idx=None, stop_idx=None):
    """Count every pair (start, stop) with 0 <= stop - start < bins * width (all pairs, no ring
    limit), binned by floor((stop - start) / width).

    Pairs at equal times count only when the start comes first in file order (``start_idx <
    stop_idx``, the events' positions in decode order): with a zero delay line that is the
    order in which ETA's tie rule delivers the two copies. Without indices they all count.
    """
    start_t = np.asarray(start_t, np.int64)
    stop_t = np.asarray(stop_t, np.int64)
    order = np.argsort(start_t, kind="stable")
    start_t = start_t[order]
    sidx = None if start_idx is None else np.asarray(start_idx)[order]
    hist = np.zeros(bins, np.int64)
    window = bins * width
    lo = np.searchsorted(start_t, stop_t - window, side="right")
    hi = np.searchsorted(start_t, stop_t, side="right")
    counts = hi - lo
    if counts.sum() == 0:
        return hist
    which = np.repeat(np.arange(len(stop_t)), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    k = np.repeat(lo, counts) + offs
    d = stop_t[which] - start_t[k]
    keep = np.ones(len(d), bool)
    if sidx is not None:
        zero = d == 0
        keep[zero] = sidx[k[zero]] < np.asarray(stop_idx)[which[zero]]
    np.add.at(hist, d[keep] // width, 1)
    return hist
