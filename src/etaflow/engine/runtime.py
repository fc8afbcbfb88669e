"""numba helpers called by generated VI programs: virtual-channel queues, clock rings and the
sync grid. Plain kernels, not inline_kernel: LLVM inlines them where they are hot, and a recipe's
first compile takes half the time (1.7 s instead of 3.5-4.2 s for the Lifetime recipe).

Contracts (spec section 4):

* **Merge** (generated code, not here): each source's pending head event is a "leaf"; the next
  event is the smallest time, ties going to ETA's tournament-tree order (spec 4.2), found by a
  scan in that priority order. Used unchanged in both modes.
* **Virtual channel v**: its head event lives in its leaf, later events in a queue segment
  ``VQ[VQI[v,0] : VQI[v,0] + VQI[v,1]]`` (ring: ``VQI[v,2]`` oldest index, ``VQI[v,3]`` count).
  ETA mode keeps emission order (a FIFO, as ETA); exact mode keeps the queue sorted by time
  (stable), so a channel never delivers events out of order. A full queue is reported (return
  value False), never overwritten.
* **Clock rings** ``tab[size]`` with ``head``/``tail``: ETA's ring keeps size-1 values and its
  record_all skips slot 0 when wrapped (both replicated in ETA mode); exact mode allocates one
  more slot so that a ring keeps all ``size`` values it declares and visits every one.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel

INF = np.int64(9223372036854775807)


# --- virtual channels ---------------------------------------------------------------------------

@kernel
def vq_reset_all(VQI):
    for v in range(VQI.shape[0]):
        VQI[v, 2] = 0
        VQI[v, 3] = 0


@kernel
def vq_push(VQ, VQI, v, t, exact):
    """Queue t behind the channel's head; exact mode inserts in time order (stable)."""
    base, cap, first, count = VQI[v, 0], VQI[v, 1], VQI[v, 2], VQI[v, 3]
    if count >= cap:
        return False
    pos = count
    if exact:
        # walk back from the newest entry while it is later than t
        while pos > 0 and VQ[base + (first + pos - 1) % cap] > t:
            VQ[base + (first + pos) % cap] = VQ[base + (first + pos - 1) % cap]
            pos -= 1
    VQ[base + (first + pos) % cap] = t
    VQI[v, 3] = count + 1
    return True


@kernel
def vq_push_front(VQ, VQI, v, t):
    base, cap, first, count = VQI[v, 0], VQI[v, 1], VQI[v, 2], VQI[v, 3]
    if count >= cap:
        return False
    first = (first - 1) % cap
    VQ[base + first] = t
    VQI[v, 2] = first
    VQI[v, 3] = count + 1
    return True


@kernel
def vput(VQ, VQI, v, leaf, t, exact):
    """Emit time t into virtual channel v whose head event is ``leaf`` (spec 4.3): INF cancels
    the channel, an idle channel takes t as its head, otherwise t is queued (exact mode: in
    time order, so an earlier t becomes the head). Returns (new head, False if the queue is
    full)."""
    if t == INF:
        VQI[v, 2] = 0
        VQI[v, 3] = 0
        return INF, True
    if leaf == INF:
        return t, True
    if exact and t < leaf:
        if not vq_push_front(VQ, VQI, v, leaf):
            return leaf, False
        return t, True
    return leaf, vq_push(VQ, VQI, v, t, exact)


@kernel
def vq_pop(VQ, VQI, v):
    count = VQI[v, 3]
    if count == 0:
        return INF
    base, cap, first = VQI[v, 0], VQI[v, 1], VQI[v, 2]
    t = VQ[base + first]
    VQI[v, 2] = (first + 1) % cap
    VQI[v, 3] = count - 1
    return t


# --- clocks -------------------------------------------------------------------------------------

@kernel
def ring_append(tab, head, tail, value):
    """Returns the new (head, tail)."""
    size = tab.shape[0]
    tab[head] = value
    head += 1                  # no modulo: an integer division per start costs more than a branch
    if head == size:
        head = 0
    if head == tail:
        tail += 1
        if tail == size:
            tail = 0
    return head, tail


@kernel
def last_sync(T, sync_int, sync_exact, exact):
    """Time of the sync at or before T: ETA's ``T - T % SYNCRate_pspr``; exact mode the nearest
    exact sync time round(k x period) not after T."""
    if not exact or sync_exact <= 0.0:
        if sync_int <= 0:
            # a source without a sync period (T2, quTAG) has no last sync: ETA divides by zero
            # (a negative period from a corrupt header keeps Python's remainder, and the loops
            # below would not end)
            return T - T % sync_int
        # T - T % sync_int (Python's floor remainder) without a 64-bit division per event: a
        # quotient from the hoisted inverse, the remainder then corrected into [0, sync_int)
        q = np.int64(np.floor(T * (1.0 / sync_int)))
        r = T - q * sync_int
        while r < 0:
            r += sync_int
        while r >= sync_int:
            r -= sync_int
        return T - r
    # a multiplication by the (loop-invariant, hoisted) inverse instead of a division per
    # event; k may then be one off near a sync, which the two checks below correct anyway
    # k stays a float (an integer value): converting it to int64 and back cost ~0.6 ns
    k = np.floor(T * (1.0 / sync_exact))
    s = np.int64(np.round(k * sync_exact))
    if s > T:
        s = np.int64(np.round((k - 1.0) * sync_exact))
    elif T - s >= np.int64(sync_exact) - 4:
        # the next sync lies at least period - 1 after s (each is rounded once; 3 ps more for
        # the float products' own rounding), so only a T that far from s can reach it
        s2 = np.int64(np.round((k + 1.0) * sync_exact))
        if s2 <= T:
            s = s2
    return s


@kernel
def fill_syncs(tab, T, sync_int, sync_exact, exact):
    """``start(SYNCS)``: refill a start ring with the sync times at or below T, newest at
    head-1, as ETA does (head = size-1, going down while the time stays >= one period)."""
    size = tab.shape[0]
    head = size - 1
    tail = head - 1
    k = 0
    v = last_sync(T, sync_int, sync_exact, exact)
    period = sync_exact if (exact and sync_exact > 0.0) else np.float64(sync_int)
    base = v
    tab[tail] = v
    while v >= sync_int and tail > 0:
        tail -= 1
        k += 1
        if exact and sync_exact > 0.0:
            v = np.int64(np.round(np.round(base / period) * period - k * period))
        else:
            v -= sync_int
        tab[tail] = v
    return head, tail


@kernel
def _record_span(hist, tab, hi, lo, ref, width, starts):
    """record_all over ring slots hi, hi-1, ..., lo; True when it stopped at a value beyond the
    histogram (the older ones lie further out)."""
    bins = hist.shape[0]
    for k in range(hi, lo - 1, -1):
        if starts:      # a stop against its starts, newest first
            idx = (ref - tab[k]) // width
            if idx >= bins:
                return True
            if idx >= 0:
                hist[idx] += 1
        else:           # a start against its stops
            idx = (tab[k] - ref) // width
            if idx < 0:
                return True
            if idx < bins:
                hist[idx] += 1
    return False


@kernel
def record_all(hist, tab, head, tail, ref, width, starts, exact):
    """``h.record_all(c)`` (1-D, no time modifier): ``ref`` (the stop, or the start) against
    every value the ring ``tab`` holds, newest first. Exact mode visits every value, across the
    wrap; ETA skips slot 0 of a wrapped ring, and a value beyond the histogram ends only the
    part of the ring before or after the wrap (two loops in ETA's code)."""
    if tail <= head:
        _record_span(hist, tab, head - 1, tail, ref, width, starts)
    elif exact:
        if not _record_span(hist, tab, head - 1, 0, ref, width, starts):
            _record_span(hist, tab, tab.shape[0] - 1, tail, ref, width, starts)
    else:
        _record_span(hist, tab, head - 1, 1, ref, width, starts)
        _record_span(hist, tab, tab.shape[0] - 1, tail, ref, width, starts)
