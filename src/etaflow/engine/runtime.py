"""numba helpers called by generated VI programs: the merge pool, virtual-channel queues, clock
rings and histogram binning.

Contracts (spec section 4):

* **Pool** (tournament tree, ETA's tie rule). Arrays ``PT`` (time), ``PF`` (source id), ``PC``
  (channel) of size P; leaf of source f at index ``n + f``; a parent copies its left child if
  ``time[left] < time[right]``, otherwise the right one, so on equal times the right child wins.
  The root holds the next event. Used unchanged in both modes.
* **Virtual channel v**: its head event lives in its pool leaf, later events in a queue segment
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

from .._jit import inline_kernel, kernel

INF = np.int64(9223372036854775807)


@kernel
def pool_init(PT, PF, PC, n):
    for i in range(PT.shape[0]):
        PT[i] = INF
        PF[i] = 255
        PC[i] = 255
    for f in range(n):
        PF[n + f] = f


@kernel
def pool_update(PT, PF, PC, i, t, f, c):
    PT[i] = t
    PF[i] = f
    PC[i] = c
    while i > 0:
        p = (i - 1) // 2
        left = 2 * p + 1
        right = left + 1
        if PT[left] < PT[right]:
            PT[p] = PT[left]
            PF[p] = PF[left]
            PC[p] = PC[left]
        else:
            PT[p] = PT[right]
            PF[p] = PF[right]
            PC[p] = PC[right]
        i = p


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


@inline_kernel
def vq_pop(VQ, VQI, v):
    count = VQI[v, 3]
    if count == 0:
        return INF
    base, cap, first = VQI[v, 0], VQI[v, 1], VQI[v, 2]
    t = VQ[base + first]
    VQI[v, 2] = (first + 1) % cap
    VQI[v, 3] = count - 1
    return t


@kernel
def vchn_put(PT, PF, PC, VQ, VQI, n, r, v, chn, t, exact):
    """Emit an event at t into virtual channel v (pool leaf n + r + v). False if its queue is full."""
    leaf = n + r + v
    if t == INF:                      # cancel_emit
        pool_update(PT, PF, PC, leaf, INF, r + v, chn)
        VQI[v, 2] = 0
        VQI[v, 3] = 0
        return True
    if PT[leaf] == INF:
        pool_update(PT, PF, PC, leaf, t, r + v, chn)
        return True
    if exact and t < PT[leaf]:
        if not vq_push_front(VQ, VQI, v, PT[leaf]):
            return False
        pool_update(PT, PF, PC, leaf, t, r + v, chn)
        return True
    return vq_push(VQ, VQI, v, t, exact)


@kernel
def vchn_next(PT, PF, PC, VQ, VQI, n, r, f):
    """Refill the leaf of virtual source f with its next queued event (before processing)."""
    v = f - r
    pool_update(PT, PF, PC, n + f, vq_pop(VQ, VQI, v), f, PC[n + f])


# --- clocks -------------------------------------------------------------------------------------

@inline_kernel
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


@inline_kernel
def last_sync(T, sync_int, sync_exact, exact):
    """Time of the sync at or before T: ETA's ``T - T % SYNCRate_pspr``; exact mode the nearest
    exact sync time round(k x period) not after T."""
    if not exact or sync_exact <= 0.0:
        # a source without a sync period (T2, quTAG) has no last sync: ETA divides by zero too
        return T - T % sync_int
    k = np.int64(np.floor(T / sync_exact))
    s = np.int64(np.round(k * sync_exact))
    if s > T:
        s = np.int64(np.round((k - 1) * sync_exact))
    else:
        s2 = np.int64(np.round((k + 1) * sync_exact))
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
