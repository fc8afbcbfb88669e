"""numba decode kernels for PicoQuant 32-bit TTTR records (PTU and the legacy .pt2/.pt3/.ht2/.ht3).

Signature and vectors: see :mod:`etaflow.formats.base`. Record layouts (bit 31 = MSB)::

    PicoHarp T2 : channel 31-28 (4) | timetag 27-0 (28)
    PicoHarp T3 : channel 31-28 (4) | dtime 27-16 (12) | nsync 15-0 (16)
    HydraHarp T2: special 31 (1) | channel 30-25 (6) | timetag 24-0 (25)
    HydraHarp T3: special 31 (1) | channel 30-25 (6) | dtime 24-10 (15) | nsync 9-0 (10)

Channel numbers follow ETA (spec section 1.10) so that recipes port unchanged:
HH T2 sync -> 0, input k (1-based) -> k; HH T3 input k -> k-1; PicoHarp raw channel; markers ->
marker offset + bit index. In exact mode every set marker bit is an event; ETA reports only the
lowest one.
"""

from __future__ import annotations

import numpy as np

from .._jit import inline_kernel, kernel
from .base import (IP_CHANNEL_OFFSET, IP_DTRES, IP_EMIT, IP_ETA, IP_INTTIME, IP_MARKER_OFFSET,
                   IP_TIME_SHIFT, IP_TTRES, IP_VARIANT, FP_DTRES, FP_TTRES, MAX_EVENTS_PER_RECORD,
                   ST_BAD, ST_EVENTS, ST_FIRST_BAD, ST_FIRST_BAD_VALUE, ST_MARKERS, ST_OVERFLOW,
                   ST_OVERFLOWS, ST_RECORD)

PH_T2_WRAP = 210698240      # PicoHarp T2 overflow period (not 2**28: a hardware quirk)
PH_T3_WRAP = 65536
HH1_T2_WRAP = 33552000      # HydraHarp V1 T2
HH2_T2_WRAP = 33554432      # 2**25, every later T2 device
HH_T3_WRAP = 1024


@inline_kernel
def _hh_t2_wrap(tt, v1):
    """Ticks a HydraHarp-family T2 overflow record adds: V1 one fixed period; later devices
    carry a count in the time field (0 meaning 1)."""
    return HH1_T2_WRAP if v1 else (HH2_T2_WRAP if tt == 0 else HH2_T2_WRAP * tt)


@inline_kernel
def _hh_t3_wrap(raw, v1):
    """Sync periods a HydraHarp-family T3 overflow record adds (nsync field = count, 0 = 1;
    V1 always one wrap)."""
    return HH_T3_WRAP if v1 | (raw == 0) else HH_T3_WRAP * raw


@kernel
def _abs_time(ticks, ip, fp):
    """Time in ps of an absolute (T2) tick count."""
    if ip[IP_INTTIME]:
        return ticks * ip[IP_TTRES] + ip[IP_TIME_SHIFT]
    return np.int64(np.round(ticks * fp[FP_TTRES])) + ip[IP_TIME_SHIFT]


@kernel
def _rel_time(nsync, dtime, ip, fp):
    """Time in ps of a T3 event: sync time, then microtime, each rounded once."""
    if ip[IP_INTTIME]:
        return nsync * ip[IP_TTRES] + dtime * ip[IP_DTRES] + ip[IP_TIME_SHIFT]
    return (np.int64(np.round(nsync * fp[FP_TTRES])) + np.int64(np.round(dtime * fp[FP_DTRES]))
            + ip[IP_TIME_SHIFT])


@kernel
def _put(n, t, c, ns, dt, out_t, out_c, out_ns, out_dt):
    out_t[n] = t
    out_c[n] = c
    if out_ns.shape[0] > 0:
        out_ns[n] = ns
        out_dt[n] = dt


@kernel
def _markers(n, bits, t, ns, ip, state, out_t, out_c, out_ns, out_dt):
    """Emit marker events for a bit mask; ETA mode keeps only the lowest bit (count trailing zeros)."""
    emit = ip[IP_EMIT] != 0
    for b in range(16):
        if bits & (1 << b):
            if emit:
                _put(n, t, np.uint8((ip[IP_MARKER_OFFSET] + b) & 0xFF), ns, -1,
                     out_t, out_c, out_ns, out_dt)
                n += 1
            state[ST_MARKERS] += 1
            state[ST_EVENTS] += 1
            if ip[IP_ETA]:
                break
    return n


@kernel
def _bad(state, i, rec):
    if state[ST_BAD] == 0:
        state[ST_FIRST_BAD] = state[ST_RECORD] + i
        state[ST_FIRST_BAD_VALUE] = rec
    state[ST_BAD] += 1


@kernel
def decode_ph_t2(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    recs = buf.view(np.uint32)
    emit = ip[IP_EMIT] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    ofl = state[ST_OVERFLOW]
    n = 0
    i = start
    while i < stop and (n <= cap or not emit):
        rec = np.int64(recs[i])
        chan = rec >> 28
        tt = rec & 0x0FFFFFFF
        if chan == 15:
            m = tt & 0xF
            if m == 0:
                ofl += PH_T2_WRAP
                state[ST_OVERFLOWS] += 1
            else:
                # The low 4 bits carry the marker mask, not time; ETA keeps them in the time.
                tm = tt if ip[IP_ETA] else tt & ~np.int64(0xF)
                n = _markers(n, m, _abs_time(ofl + tm, ip, fp), -1, ip, state,
                             out_t, out_c, out_ns, out_dt)
        elif chan <= 4:
            if emit:
                _put(n, _abs_time(ofl + tt, ip, fp), np.uint8((ip[IP_CHANNEL_OFFSET] + chan) & 0xFF),
                     -1, -1, out_t, out_c, out_ns, out_dt)
                n += 1
            state[ST_EVENTS] += 1
        else:
            _bad(state, i - start, rec)
        i += 1
    state[ST_OVERFLOW] = ofl
    state[ST_RECORD] += i - start
    return i, n


@kernel
def decode_ph_t3(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    recs = buf.view(np.uint32)
    emit = ip[IP_EMIT] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    ofl = state[ST_OVERFLOW]
    n = 0
    i = start
    while i < stop and (n <= cap or not emit):
        rec = np.int64(recs[i])
        chan = rec >> 28
        dtime = (rec >> 16) & 0xFFF
        nsync = rec & 0xFFFF
        if chan == 15:
            if dtime == 0:
                ofl += PH_T3_WRAP
                state[ST_OVERFLOWS] += 1
            else:
                bits = dtime if ip[IP_ETA] else dtime & 0xF
                if bits == 0:
                    _bad(state, i - start, rec)
                else:
                    n = _markers(n, bits, _rel_time(ofl + nsync, 0, ip, fp), ofl + nsync, ip, state,
                                 out_t, out_c, out_ns, out_dt)
        elif 1 <= chan <= 4:
            if emit:
                _put(n, _rel_time(ofl + nsync, dtime, ip, fp),
                     np.uint8((ip[IP_CHANNEL_OFFSET] + chan) & 0xFF), ofl + nsync, dtime,
                     out_t, out_c, out_ns, out_dt)
                n += 1
            state[ST_EVENTS] += 1
        else:
            _bad(state, i - start, rec)
        i += 1
    state[ST_OVERFLOW] = ofl
    state[ST_RECORD] += i - start
    return i, n


@inline_kernel
def _hh_counts(recs, start, stop, v1, t3):
    """The overflow time, special records, T2 syncs and overflow records of ``recs[start:stop]``
    and how many other special records (markers, illegal) it holds, without a branch per record
    (the loop vectorises): a state scan that finds no other record is done by this alone."""
    add = np.int64(0)
    specials = np.int64(0)
    syncs = np.int64(0)
    overflows = np.int64(0)
    part = recs[start:stop]     # indices from 0: numba's negative-index test stops vectorising
    for i in range(part.shape[0]):
        rec = np.int64(part[i])
        sp = rec >> 31
        chan = (rec >> 25) & 0x3F
        o = sp & np.int64(chan == 63)
        if t3:
            add += o * _hh_t3_wrap(rec & 0x3FF, v1)
        else:
            add += o * _hh_t2_wrap(rec & 0x1FFFFFF, v1)
            syncs += sp & np.int64(chan == 0)
        specials += sp
        overflows += o
    return add, specials, syncs, overflows, specials - overflows - syncs


@inline_kernel
def _scan_done(state, records, events, overflows, add):
    state[ST_EVENTS] += events
    state[ST_OVERFLOWS] += overflows
    state[ST_OVERFLOW] += add
    state[ST_RECORD] += records


@inline_kernel
def _hh_scan(recs, start, stop, state, ip, out_t, out_c, out_ns, out_dt, t3):
    """A HydraHarp-family decoder without output (the state scan that seeks and clips_list
    rely on): photons are only counted, from the records that are not (counts kept in
    registers). T2 sync records (channel 0) count as events; T3 has none."""
    v1 = ip[IP_VARIANT] == 1
    add, specials, syncs, overflows, others = _hh_counts(recs, start, stop, v1, t3)
    if others:
        # markers (or illegal records) update the state in order: the full loop
        add = specials = syncs = overflows = np.int64(0)
        for i in range(start, stop):
            rec = recs[i]
            if rec >= 0x80000000:
                specials += 1
                chan = (rec >> 25) & 0x3F
                if chan == 63:
                    add += _hh_t3_wrap(np.int64(rec & 0x3FF), v1) if t3 else \
                        _hh_t2_wrap(np.int64(rec & 0x1FFFFFF), v1)
                    overflows += 1
                elif chan == 0 and not t3:
                    syncs += 1
                elif 1 <= chan <= 15:     # counted only: a scan emits no event, time or nsync
                    _markers(0, chan, 0, 0, ip, state, out_t, out_c, out_ns, out_dt)
                else:
                    _bad(state, i - start, np.int64(rec))
    _scan_done(state, stop - start, (stop - start) - specials + syncs, overflows, add)
    return stop, 0


@kernel
def _hh_t2_scan(recs, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    return _hh_scan(recs, start, stop, state, ip, out_t, out_c, out_ns, out_dt, False)


@kernel
def decode_hh_t2(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    recs = buf.view(np.uint32)
    emit = ip[IP_EMIT] != 0
    v1 = ip[IP_VARIANT] == 1
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    ofl = state[ST_OVERFLOW]
    coff = ip[IP_CHANNEL_OFFSET]
    n = 0
    i = start
    if not emit:
        return _hh_t2_scan(recs, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt)
    if ip[IP_INTTIME]:
        # Fast path for the common case (integer ps tick). The inner range loop covers a block
        # that cannot overflow the output, so its body has no capacity test.
        tres = ip[IP_TTRES]
        shift = ip[IP_TIME_SHIFT]
        signal = np.int64(0)
        while i < stop and n <= cap:
            end = min(stop, i + (cap - n) // MAX_EVENTS_PER_RECORD + 1)
            for j in range(i, end):
                rec = recs[np.uint64(j)]    # unsigned indices: no negative-index test
                tt = np.int64(rec & 0x1FFFFFF)
                if rec < 0x80000000:
                    out_t[np.uint64(n)] = (ofl + tt) * tres + shift
                    out_c[np.uint64(n)] = np.uint8((coff + (rec >> 25) + 1) & 0xFF)
                    n += 1
                    signal += 1
                else:
                    chan = (rec >> 25) & 0x3F
                    if chan == 63:
                        ofl += _hh_t2_wrap(tt, v1)
                        state[ST_OVERFLOWS] += 1
                    elif chan == 0:
                        out_t[n] = (ofl + tt) * tres + shift
                        out_c[n] = np.uint8(coff & 0xFF)
                        n += 1
                        signal += 1
                    elif chan <= 15:
                        n = _markers(n, chan, (ofl + tt) * tres + shift, -1, ip, state,
                                     out_t, out_c, out_ns, out_dt)
                    else:
                        _bad(state, j - start, rec)
            i = end
        state[ST_EVENTS] += signal
    else:
        while i < stop and n <= cap:
            rec = np.int64(recs[i])
            chan = (rec >> 25) & 0x3F
            tt = rec & 0x1FFFFFF
            if rec >> 31 == 0:
                _put(n, _abs_time(ofl + tt, ip, fp), np.uint8((coff + chan + 1) & 0xFF), -1, -1,
                     out_t, out_c, out_ns, out_dt)
                n += 1
                state[ST_EVENTS] += 1
            elif chan == 63:
                ofl += _hh_t2_wrap(tt, v1)
                state[ST_OVERFLOWS] += 1
            elif chan == 0:
                _put(n, _abs_time(ofl + tt, ip, fp), np.uint8(coff & 0xFF), -1, -1,
                     out_t, out_c, out_ns, out_dt)
                n += 1
                state[ST_EVENTS] += 1
            elif chan <= 15:
                n = _markers(n, chan, _abs_time(ofl + tt, ip, fp), -1, ip, state,
                             out_t, out_c, out_ns, out_dt)
            else:
                _bad(state, i - start, rec)
            i += 1
    state[ST_OVERFLOW] = ofl
    state[ST_RECORD] += i - start
    return i, n


@kernel
def _hh_t3_block(recs, i, end, n, ofl, ip, fp, out_t, out_c, int_time, dtres_i):
    """Photons and overflows of records i..end for _hh_t3_times, stopping at the first other
    special record (markers, illegal), which the caller decodes. Returns (next record, next
    output index, overflow accumulator, overflow records). A function of its own: inside the
    caller's block loop the same code ran a third slower."""
    v1 = ip[IP_VARIANT] == 1
    coff = ip[IP_CHANNEL_OFFSET]
    ttres, dtres, shift = ip[IP_TTRES], ip[IP_DTRES], ip[IP_TIME_SHIFT]
    ttres_f, dtres_f = fp[FP_TTRES], fp[FP_DTRES]
    n0 = n
    j = i
    while j < end:
        rec = recs[np.uint64(j)]    # unsigned indices: no negative-index test per access
        top = rec >> 25
        if (top >= 0x40) & (top != 0x7F):     # one branch, rarely taken (no 'and')
            break
        # photon or overflow, without a branch: at high count rates every few records is an
        # overflow, and a mispredicted branch costs more than decoding the record. An
        # overflow writes a scratch event that the next record overwrites. (Counting photons
        # and overflows in the loop costs as much again: they are derived below.)
        raw = np.int64(rec & 0x3FF)
        nsync = ofl + raw
        special = np.int64(top >> 6)
        dtime = np.int64((rec >> 10) & 0x7FFF)
        if int_time:
            out_t[np.uint64(n)] = nsync * ttres + dtime * dtres + shift
        elif dtres_i:   # a whole-picosecond dtime unit: round(dtime x unit) is a product
            out_t[np.uint64(n)] = np.int64(np.round(nsync * ttres_f)) + dtime * dtres_i + shift
        else:   # the same arithmetic as _rel_time
            out_t[np.uint64(n)] = (np.int64(np.round(nsync * ttres_f)) +
                                   np.int64(np.round(dtime * dtres_f)) + shift)
        out_c[np.uint64(n)] = np.uint8((coff + (top & 0x3F)) & 0xFF)
        n += 1 - special
        ofl += special * _hh_t3_wrap(raw, v1)
        j += 1
    return j, n, ofl, (j - i) - (n - n0)


@kernel
def _hh_t3_times(recs, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt, cap):
    """decode_hh_t3's fast path when only times and channels are wanted: blocks that cannot
    overflow the output, counts kept in registers. Returns (next record, events)."""
    ofl = state[ST_OVERFLOW]
    int_time = ip[IP_INTTIME] != 0
    # a measured sync period is rarely whole picoseconds, the dtime unit nearly always is
    dtres_i = np.int64(fp[FP_DTRES]) if fp[FP_DTRES] == np.floor(fp[FP_DTRES]) else 0
    n = 0
    i = start
    photons = np.int64(0)
    overflows = np.int64(0)
    while i < stop and n <= cap:
        end = min(stop, i + (cap - n) // MAX_EVENTS_PER_RECORD + 1)
        n_before = n
        i, n, ofl, o = _hh_t3_block(recs, i, end, n, ofl, ip, fp, out_t, out_c, int_time,
                                    dtres_i)
        photons += n - n_before
        overflows += o
        if i < end:     # a marker or illegal record stopped the block
            rec = np.int64(recs[i])
            nsync = ofl + (rec & 0x3FF)
            chan = (rec >> 25) & 0x3F
            if 1 <= chan <= 15:
                n = _markers(n, chan, _rel_time(nsync, 0, ip, fp), nsync, ip, state,
                             out_t, out_c, out_ns, out_dt)
            else:
                _bad(state, i - start, rec)
            i += 1
    state[ST_OVERFLOWS] += overflows
    state[ST_EVENTS] += photons
    state[ST_OVERFLOW] = ofl
    state[ST_RECORD] += i - start
    return i, n


@kernel
def _hh_t3_scan(recs, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    return _hh_scan(recs, start, stop, state, ip, out_t, out_c, out_ns, out_dt, True)


@kernel
def decode_hh_t3(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    recs = buf.view(np.uint32)
    emit = ip[IP_EMIT] != 0
    v1 = ip[IP_VARIANT] == 1
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    ofl = state[ST_OVERFLOW]
    coff = ip[IP_CHANNEL_OFFSET]
    n = 0
    i = start
    if emit and out_ns.shape[0] == 0:
        return _hh_t3_times(recs, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt, cap)
    if not emit:
        return _hh_t3_scan(recs, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt)
    while i < stop and n <= cap:        # here events are wanted with their nsync and dtime
        rec = np.int64(recs[i])
        chan = (rec >> 25) & 0x3F
        dtime = (rec >> 10) & 0x7FFF
        nsync = rec & 0x3FF
        if rec >> 31 == 0:
            _put(n, _rel_time(ofl + nsync, dtime, ip, fp), np.uint8((coff + chan) & 0xFF),
                 ofl + nsync, dtime, out_t, out_c, out_ns, out_dt)
            n += 1
            state[ST_EVENTS] += 1
        elif chan == 63:
            ofl += _hh_t3_wrap(nsync, v1)
            state[ST_OVERFLOWS] += 1
        elif 1 <= chan <= 15:
            n = _markers(n, chan, _rel_time(ofl + nsync, 0, ip, fp), ofl + nsync, ip, state,
                         out_t, out_c, out_ns, out_dt)
        else:
            # special channel 0 or 16..62 carry nothing in T3 (ETA skips them too)
            _bad(state, i - start, rec)
        i += 1
    state[ST_OVERFLOW] = ofl
    state[ST_RECORD] += i - start
    return i, n
