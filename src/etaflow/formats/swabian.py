"""Swabian Instruments Time Tagger 16-byte tag dumps: reader, kernel, writer, loss intervals.

No header; records back to back, little-endian (spec/file-formats.md section 4.1)::

    0     uint8  type: 0 TimeTag, 1 Error, 2 OverflowBegin, 3 OverflowEnd, 4 MissedEvents
    1     -      reserved
    2-3   uint16 missed events (MissedEvents records only)
    4-7   int32  channel (negative = falling edge)
    8-15  int64  time in ps since the device started

Only TimeTag records are events; the channel is ETA's: (channel offset + channel) mod 256, so
falling edges wrap (-1 -> 255). Types 1-4 report lost data: they are counted (``ST_LOSS_RECORDS``,
and the MissedEvents counts in ``ST_MISSED``) and never emitted, in both modes. ETA ignores the
type byte and emits them as ordinary events (eta-behaviour.md section 9.1 item 9); that turns
data-loss notices into fake detections, so we do not copy it even in ETA mode. During an
overflow interval (OverflowBegin .. OverflowEnd) the device dropped tags: use
:func:`overflow_intervals` to exclude those periods from count-rate normalisation.
A type above 4 is not a Swabian record (wrong format= or a corrupt file): FormatError.
"""

from __future__ import annotations

import os

import numpy as np

from .._jit import kernel
from ..errors import FormatError
from ._pq_kernels import _bad, _put
from .base import (IP_CHANNEL_OFFSET, IP_EMIT, IP_TIME_SHIFT, MAX_EVENTS_PER_RECORD, ST_EVENTS,
                   ST_LOSS_RECORDS, ST_MISSED, ST_RECORD, SourceInfo)
from .registry import FORMAT_SI_16bytes, FormatEntry

__all__ = ["RECORD_DTYPE", "TIME_TAG", "ERROR", "OVERFLOW_BEGIN", "OVERFLOW_END",
           "MISSED_EVENTS", "decode_swabian", "swabian_records", "write_swabian", "loss_records",
           "overflow_intervals", "read_swabian_header"]

RECORD_DTYPE = np.dtype([("type", "u1"), ("reserved", "u1"), ("missed", "<u2"),
                         ("channel", "<i4"), ("time", "<i8")])
TIME_TAG, ERROR, OVERFLOW_BEGIN, OVERFLOW_END, MISSED_EVENTS = range(5)
RECORD_SIZE = 16
SCAN_RECORDS = 1 << 20


@kernel
def decode_swabian(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    """Emit TimeTag records; count the data-loss records."""
    q = buf.view(np.int64)               # a record is two int64: type/missed/channel, time
    emit = ip[IP_EMIT] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    coff = ip[IP_CHANNEL_OFFSET]
    shift = ip[IP_TIME_SHIFT]
    n = 0
    i = start
    while i < stop and (n <= cap or not emit):
        head = q[2 * i]
        kind = head & 0xFF
        if kind == TIME_TAG:
            if emit:
                # head >> 32 is the int32 channel, sign included (arithmetic shift)
                _put(n, q[2 * i + 1] + shift, np.uint8((coff + (head >> 32)) & 0xFF), -1, -1,
                     out_t, out_c, out_ns, out_dt)
                n += 1
            state[ST_EVENTS] += 1
        elif kind <= MISSED_EVENTS:
            state[ST_LOSS_RECORDS] += 1
            if kind == MISSED_EVENTS:    # the count field means something only here
                state[ST_MISSED] += (head >> 16) & 0xFFFF
        else:
            _bad(state, i - start, head)
        i += 1
    state[ST_RECORD] += i - start
    return i, n


def _headerless(record_type=FORMAT_SI_16bytes, ttres=1, dtres=1, syncrate=0) -> SourceInfo:
    # ETA: TTRes 1, DTRes 1, SYNCRate 0; times are ps whatever TTRes says.
    return SourceInfo(format=FORMAT_SI_16bytes, format_name="Swabian 16-byte dump",
                      kernel=decode_swabian, record_size=RECORD_SIZE, data_offset=0,
                      record_type=FORMAT_SI_16bytes, mode=None, device="Swabian Time Tagger",
                      time_unit_ps=1.0, eta_time_unit_ps=1, eta_dtime_unit_ps=1,
                      marker_channels=0)


def read_swabian_header(f, filename: str, file_size: int) -> SourceInfo:
    """A dump has no header: describe it from the file size alone."""
    info = _headerless()
    info.header_records = info.file_records(file_size)
    return info


# --- loss records -----------------------------------------------------------------------------

def _records(source) -> np.ndarray:
    """Whole records of a file (memory-mapped) or of a bytes-like / uint8 buffer."""
    if isinstance(source, (str, os.PathLike)):
        n = os.path.getsize(source) // RECORD_SIZE
        if n == 0:
            return np.zeros(0, RECORD_DTYPE)
        return np.memmap(source, dtype=RECORD_DTYPE, mode="r", shape=(n,))
    raw = np.frombuffer(source, dtype=np.uint8) if not isinstance(source, np.ndarray) \
        else source.view(np.uint8).reshape(-1)
    n = len(raw) // RECORD_SIZE
    return raw[: n * RECORD_SIZE].view(RECORD_DTYPE)


def loss_records(source) -> np.ndarray:
    """The non-TimeTag records of a dump (path or buffer), in file order: a structured array
    with the record index and the type, missed, channel and time fields. Scans in chunks, so
    memory stays bounded by the number of loss records."""
    return _loss(_records(source))


def _loss(recs: np.ndarray) -> np.ndarray:
    out_dtype = np.dtype([("index", "<i8"), ("type", "u1"), ("missed", "<u2"),
                          ("channel", "<i4"), ("time", "<i8")])
    parts = []
    for a in range(0, len(recs), SCAN_RECORDS):
        chunk = recs[a: a + SCAN_RECORDS]
        idx = np.flatnonzero(chunk["type"] != TIME_TAG)
        if len(idx):
            part = np.empty(len(idx), out_dtype)
            part["index"] = idx + a
            for name in ("type", "missed", "channel", "time"):
                part[name] = chunk[name][idx]
            parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0, out_dtype)


def overflow_intervals(source, time_shift: int = 0) -> np.ndarray:
    """``(begin_ps, end_ps)`` rows, one per overflow period of a dump (path or buffer).

    During these periods the Time Tagger dropped tags: exclude them from normalisation. A period
    still open at the end of the file ends at the last record's time; an OverflowEnd with no
    OverflowBegin before it (recording started mid-overflow) begins at the first record's time.
    Repeated OverflowBegin records inside a period are part of that period.
    """
    recs = _records(source)
    loss = _loss(recs)
    bad = loss[loss["type"] > MISSED_EVENTS]
    if len(bad):
        i = int(bad["index"][0])
        raise FormatError(f"illegal Swabian record #{i} (type {int(bad['type'][0])})",
                          source if isinstance(source, (str, os.PathLike)) else "<buffer>",
                          i * RECORD_SIZE)
    rows = []
    begin = None
    for kind, t in zip(loss["type"], loss["time"]):
        if kind == OVERFLOW_BEGIN:
            if begin is None:
                begin = int(t)
        elif kind == OVERFLOW_END:
            rows.append((int(recs["time"][0]) if begin is None else begin, int(t)))
            begin = None
    if begin is not None:
        rows.append((begin, int(recs["time"][-1])))
    out = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return out + time_shift


# --- writer -----------------------------------------------------------------------------------

def swabian_records(times, channels, types=None, missed=None) -> np.ndarray:
    """16-byte records (structured array, ``RECORD_DTYPE``). ``types`` default to TimeTag;
    ``missed`` is the MissedEvents count field. Any type 0..255 is written (types above 4 are
    illegal, useful only to test readers)."""
    t = np.asarray(times)
    if t.dtype.kind == "f":
        t = np.round(t)
    n = len(t)
    rec = np.zeros(n, RECORD_DTYPE)
    rec["time"] = t.astype(np.int64)
    for name, value, lo, hi in (("channel", channels, -2**31, 2**31 - 1),
                                ("type", 0 if types is None else types, 0, 255),
                                ("missed", 0 if missed is None else missed, 0, 0xFFFF)):
        v = np.broadcast_to(np.asarray(value, dtype=np.int64), (n,))
        if n and (v.min() < lo or v.max() > hi):
            raise ValueError(f"Swabian {name} values must be {lo}..{hi}; got {v.min()}..{v.max()}")
        rec[name] = v
    return rec


def write_swabian(path, times, channels, types=None, missed=None) -> None:
    """Write a Swabian 16-byte dump (see :func:`swabian_records`)."""
    with open(os.fspath(path), "wb") as f:
        f.write(swabian_records(times, channels, types, missed).tobytes())


ENTRIES = [
    FormatEntry(code=FORMAT_SI_16bytes, name="Swabian 16-byte dump", open=read_swabian_header,
                headerless=_headerless),
]
