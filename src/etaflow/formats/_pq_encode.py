"""Encode events into PicoQuant 32-bit records (the inverse of ``_pq_kernels``), for writers,
tests and the simulator.

Events are given in the record's own units: T2 ``ticks`` (absolute time-tag counts), T3 ``nsync``
(absolute sync counts) and ``dtime``. ``channels`` use the ETA numbering of the layout
(HH T2: 0 = sync, k = input k; HH T3: input k -> k-1; PicoHarp: raw 0..4 / 1..4); a negative
value ``-m`` writes a marker record with bit mask ``m``. Overflow records are inserted as needed:
one record per wrap for HydraHarp V1 and PicoHarp, one count-carrying record for the others.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel
from . import _pq_kernels as K

__all__ = ["encode_t2", "encode_t3"]


@kernel
def _encode(layout, v1, coarse, fine, chan, out):
    """layout: 0 PH-T2, 1 PH-T3, 2 HH-T2, 3 HH-T3. Returns records written (out may be empty: count)."""
    if layout == 0:
        wrap, bits = K.PH_T2_WRAP, 28
    elif layout == 1:
        wrap, bits = K.PH_T3_WRAP, 16
    elif layout == 2:
        wrap, bits = (K.HH1_T2_WRAP if v1 else K.HH2_T2_WRAP), 25
    else:
        wrap, bits = K.HH_T3_WRAP, 10
    write = out.shape[0] > 0
    n = 0
    base = np.int64(0)
    for i in range(coarse.shape[0]):
        c = coarse[i]
        while c - base >= wrap:
            k = (c - base) // wrap
            if layout == 0:
                rec, k = np.uint32((15 << 28)), 1
            elif layout == 1:
                rec, k = np.uint32((15 << 28)), 1
            elif v1:
                rec, k = np.uint32((1 << 31) | (63 << 25)), 1
            else:
                k = min(k, (1 << bits) - 1)
                rec = np.uint32((1 << 31) | (63 << 25) | k)
            if write:
                out[n] = rec
            n += 1
            base += k * wrap
        low = np.uint32(c - base)
        ch = chan[i]
        if layout == 0:
            if ch < 0:
                rec = np.uint32((15 << 28) | ((low & ~np.uint32(0xF)) | np.uint32(-ch)))
            else:
                rec = np.uint32((ch << 28) | low)
        elif layout == 1:
            if ch < 0:
                rec = np.uint32((15 << 28) | (np.uint32(-ch) << 16) | low)
            else:
                rec = np.uint32((ch << 28) | (np.uint32(fine[i]) << 16) | low)
        elif layout == 2:
            if ch < 0:
                rec = np.uint32((1 << 31) | (np.uint32(-ch) << 25) | low)
            elif ch == 0:
                rec = np.uint32((1 << 31) | low)
            else:
                rec = np.uint32(((ch - 1) << 25) | low)
        else:
            if ch < 0:
                rec = np.uint32((1 << 31) | (np.uint32(-ch) << 25) | low)
            else:
                rec = np.uint32((ch << 25) | (np.uint32(fine[i]) << 10) | low)
        if write:
            out[n] = rec
        n += 1
    return n


def _run(layout, v1, coarse, fine, chan):
    coarse = np.ascontiguousarray(coarse, dtype=np.int64)
    chan = np.ascontiguousarray(chan, dtype=np.int64)
    fine = np.zeros_like(coarse) if fine is None else np.ascontiguousarray(fine, dtype=np.int64)
    if len(coarse) and (np.any(np.diff(coarse) < 0) or coarse[0] < 0):
        raise ValueError("event times must be non-negative and non-decreasing to encode")
    n = _encode(layout, v1, coarse, fine, chan, np.zeros(0, np.uint32))
    out = np.empty(n, dtype=np.uint32)
    _encode(layout, v1, coarse, fine, chan, out)
    return out


def encode_t2(ticks, channels, *, picoharp: bool = False, hydraharp_v1: bool = False) -> np.ndarray:
    """Records for T2 events (HydraHarp-family layout unless ``picoharp``)."""
    return _run(0 if picoharp else 2, hydraharp_v1, ticks, None, channels)


def encode_t3(nsync, dtime, channels, *, picoharp: bool = False,
              hydraharp_v1: bool = False) -> np.ndarray:
    """Records for T3 events (HydraHarp-family layout unless ``picoharp``)."""
    return _run(1 if picoharp else 3, hydraharp_v1, nsync, dtime, channels)
