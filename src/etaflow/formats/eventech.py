"""Eventech ET A033 files: reader, kernel, writer. ETA-compatible, unverified (no independent
specification or sample exists; spec/file-formats.md section 6, eta-behaviour.md section 1.9).

No header; 8-byte records, little-endian::

    0-3  int32 d0   sign = input (negative: A, else B), magnitude = coarse count (327.68 us)
    4-7  int32 d1   fine time in ps; the record is an event only if d1 > 0

    time [ps] = 327 680 000 * |d0| + d1;  channel = offset + 0 (input A) or offset + 1 (input B)

Records with d1 <= 0 carry no event and are counted in ``ST_SKIPPED`` (ETA drops them silently).
"""

from __future__ import annotations

import os

import numpy as np

from .._jit import kernel
from ._pq_kernels import _put
from .base import (IP_CHANNEL_OFFSET, IP_EMIT, IP_TIME_SHIFT, MAX_EVENTS_PER_RECORD, ST_EVENTS,
                   ST_RECORD, ST_SKIPPED, SourceInfo)
from .registry import FORMAT_ET_A033, FormatEntry

__all__ = ["COARSE_PS", "RECORD_DTYPE", "decode_eventech", "eventech_records", "write_eventech",
           "read_eventech_header"]

COARSE_PS = 327_680_000
RECORD_DTYPE = np.dtype([("d0", "<i4"), ("d1", "<i4")])


@kernel
def decode_eventech(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    words = buf.view(np.int32)
    emit = ip[IP_EMIT] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    coff = ip[IP_CHANNEL_OFFSET]
    shift = ip[IP_TIME_SHIFT]
    n = 0
    skipped = 0
    i = start
    while i < stop and (n <= cap or not emit):
        d0 = np.int64(words[2 * i])      # int64: -(-2**31) must not overflow
        d1 = np.int64(words[2 * i + 1])
        if d1 <= 0:
            skipped += 1
        elif emit:
            if d0 < 0:
                t, ch = -d0 * COARSE_PS + d1, coff
            else:
                t, ch = d0 * COARSE_PS + d1, coff + 1
            _put(n, t + shift, np.uint8(ch & 0xFF), -1, -1, out_t, out_c, out_ns, out_dt)
            n += 1
        i += 1
    state[ST_SKIPPED] += skipped
    state[ST_EVENTS] += i - start - skipped
    state[ST_RECORD] += i - start
    return i, n


def _headerless(record_type=FORMAT_ET_A033, ttres=1, dtres=1, syncrate=0) -> SourceInfo:
    # ETA: TTRes 1, DTRes 1, SYNCRate 0; times are ps whatever TTRes says.
    return SourceInfo(format=FORMAT_ET_A033, format_name="Eventech ET A033",
                      kernel=decode_eventech, record_size=RECORD_DTYPE.itemsize, data_offset=0,
                      record_type=FORMAT_ET_A033, mode=None, device="Eventech ET A033",
                      time_unit_ps=1.0, eta_time_unit_ps=1, eta_dtime_unit_ps=1,
                      marker_channels=0)


def read_eventech_header(f, filename: str, file_size: int) -> SourceInfo:
    """ET A033 files have no header: describe one from its size."""
    info = _headerless()
    info.header_records = info.file_records(file_size)
    return info


def eventech_records(times, channels) -> np.ndarray:
    """Records for events at ``times`` (ps) on ``channels`` (0 = input A, 1 = input B).

    The fine part is kept in 1..327 680 000 so that it is always > 0 (a record with d1 = 0 would
    be skipped). Input A needs a coarse count >= 1 (d0 = 0 means input B), so A events must be
    later than 327 680 000 ps; times must be > 0 and fit the int32 coarse counter.
    """
    t = np.asarray(times)
    if t.dtype.kind == "f":
        t = np.round(t)
    t = t.astype(np.int64)
    ch = np.broadcast_to(np.asarray(channels, dtype=np.int64), t.shape)
    if len(t) and not np.all((ch == 0) | (ch == 1)):
        raise ValueError("Eventech channels must be 0 (input A) or 1 (input B)")
    coarse = (t - 1) // COARSE_PS
    fine = t - coarse * COARSE_PS
    bad = (t <= 0) | (coarse >= 2**31) | ((ch == 0) & (coarse == 0))
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"event {k} (time {int(t[k])} ps, channel {int(ch[k])}) cannot be "
                         "encoded: times must be > 0 (input A: > 327 680 000) and < 2**31 coarse "
                         "periods")
    rec = np.empty(len(t), RECORD_DTYPE)
    rec["d0"] = np.where(ch == 0, -coarse, coarse)
    rec["d1"] = fine
    return rec


def write_eventech(path, times=None, channels=None, *, records=None) -> None:
    """Write an ET A033 file from events (see :func:`eventech_records`) or from ready ``records``
    (a ``RECORD_DTYPE`` array or an (n, 2) int32 array, e.g. with skipped d1 <= 0 rows)."""
    records = eventech_records(times, channels) if records is None else np.asarray(records)
    records = records.astype(RECORD_DTYPE if records.dtype.names else "<i4")
    with open(os.fspath(path), "wb") as f:
        f.write(np.ascontiguousarray(records).tobytes())


ENTRIES = [
    FormatEntry(code=FORMAT_ET_A033, name="Eventech ET A033", open=read_eventech_header,
                headerless=_headerless),
]
