"""qutools quTAG files: binary (with header), raw (no header) and compressed; readers, kernels,
writers.

Byte layouts (little-endian; spec/file-formats.md section 5, eta-behaviour.md sections 1.5-1.6)::

    header (binary and compressed, 40 bytes; observed, not documented by the vendor):
        0-3   magic 87 B3 91 FA
        4-7   uint32 file size in bytes (in both of ETA's samples)
        8-11  uint32 0x00000800, 12-15 uint32 0x73, 16-23 zero, 24-39 unknown (hash or GUID?)

    binary / raw record, 10 bytes:   0-7 int64 time (1 ps) | 8-9 uint16 channel
    compressed record, 5 bytes:      one 40-bit integer, bits 0-36 time, bits 37-39 channel

Channels are numbered as ETA numbers them: channel offset + raw channel, mod 256, in both modes.
quTAG channels never exceed 203, so the wrap only shows on corrupt data; we keep ETA's wrap
rather than reject such records because the raw format cannot be sniffed and ETA accepts it.
Marker channels 100-104 (104 = the 1 ms timer tick) and 200-203 (falling edges) are emitted like
any channel but counted as markers (``ST_MARKERS``, ``SourceInfo.raw_marker_channels``).
Records are kept in file order: quTAG files are not time-ordered (other channels are interleaved
up to ~100 ns late); sorting belongs to the engine.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np

from .._jit import kernel
from ..errors import FormatError, FormatWarning
from ._pq_kernels import _put
from .base import (IP_CHANNEL_OFFSET, IP_EMIT, IP_ETA, IP_TIME_SHIFT, MAX_EVENTS_PER_RECORD,
                   ST_AUX, ST_AUX2, ST_EVENTS, ST_MARKERS, ST_RECORD, SourceInfo)
from .registry import FORMAT_QT_BINARY, FORMAT_QT_COMPRESSED, FORMAT_QT_RAW, FormatEntry

__all__ = ["read_qutag_binary_header", "read_qutag_compressed_header", "read_qutag_raw_header",
           "write_qutag_binary", "write_qutag_raw", "write_qutag_compressed", "qutag_records",
           "compressed_records", "qutag_header", "decode_qutag_binary", "decode_qutag_compressed",
           "MARKER_CHANNELS", "RECORD_DTYPE"]

MAGIC = b"\x87\xb3\x91\xfa"
HEADER_SIZE = 40
RECORD_DTYPE = np.dtype([("time", "<i8"), ("channel", "<u2")])     # 10 bytes, packed
COMPRESSED_SIZE = 5
TIME_BITS = 37
WRAP = np.int64(1) << TIME_BITS          # the compressed time field's range
HALF_WRAP = WRAP >> 1
TIME_MASK = WRAP - 1
MARKER_CHANNELS = (100, 101, 102, 103, 104, 200, 201, 202, 203)
DEVICE = "qutools quTAG"


# --- decode kernels ---------------------------------------------------------------------------

@kernel
def _is_marker(ch):
    return (100 <= ch <= 104) or (200 <= ch <= 203)


@kernel
def decode_qutag_binary(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    """10-byte records: every record is an event; time needs no scaling (1 ps)."""
    words = buf.view(np.uint16)          # a record is 5 uint16 words: 4 of time, 1 of channel
    emit = ip[IP_EMIT] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    coff = ip[IP_CHANNEL_OFFSET]
    shift = ip[IP_TIME_SHIFT]
    n = 0
    markers = 0
    i = start
    while i < stop and (n <= cap or not emit):
        w = 5 * i
        ch = np.int64(words[w + 4])
        if _is_marker(ch):
            markers += 1
        if emit:
            t = (np.int64(words[w]) | (np.int64(words[w + 1]) << 16)
                 | (np.int64(words[w + 2]) << 32) | (np.int64(words[w + 3]) << 48))
            _put(n, t + shift, np.uint8((coff + ch) & 0xFF), -1, -1, out_t, out_c, out_ns, out_dt)
            n += 1
        i += 1
    state[ST_EVENTS] += i - start
    state[ST_MARKERS] += markers
    state[ST_RECORD] += i - start
    return i, n


@kernel
def decode_qutag_compressed(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    """5-byte records, 37-bit time. Exact mode unwraps the time; ETA mode emits it as stored.

    Unwrapping keeps ``last`` (ST_AUX2), the raw time of the latest record so far, and the wrap
    count (ST_AUX). A step back of more than half the range is a wrap; a step forward of more
    than half the range is a late record from before the latest wrap (quTAG's disorder); any
    smaller step back is disorder, not a wrap. So events must never be more than half the range
    (2**36 ps = 68.7 ms at 1 ps) apart, or wraps are lost; that is inherent in the format.
    """
    emit = ip[IP_EMIT] != 0
    eta = ip[IP_ETA] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    coff = ip[IP_CHANNEL_OFFSET]
    shift = ip[IP_TIME_SHIFT]
    wraps = state[ST_AUX]
    last = state[ST_AUX2]
    first = state[ST_EVENTS] == 0        # every record is an event, so none seen yet
    n = 0
    i = start
    while i < stop and (n <= cap or not emit):
        o = 5 * i
        v = (np.int64(buf[o]) | (np.int64(buf[o + 1]) << 8) | (np.int64(buf[o + 2]) << 16)
             | (np.int64(buf[o + 3]) << 24) | (np.int64(buf[o + 4]) << 32))
        t = v & TIME_MASK
        if first:
            last = t
            first = False
        d = t - last
        epoch = wraps
        if d < -HALF_WRAP:
            wraps += 1
            epoch = wraps
            last = t
        elif d > HALF_WRAP:
            epoch = wraps - 1
        elif d > 0:
            last = t
        if emit:
            tt = t if eta else epoch * WRAP + t
            _put(n, tt + shift, np.uint8((coff + (v >> TIME_BITS)) & 0xFF), -1, -1,
                 out_t, out_c, out_ns, out_dt)
            n += 1
        i += 1
    state[ST_AUX] = wraps
    state[ST_AUX2] = last
    state[ST_EVENTS] += i - start
    state[ST_RECORD] += i - start
    return i, n


# --- headers ------------------------------------------------------------------------------------

def _source(code: int, name: str, kern, record_size: int, data_offset: int,
            markers: bool) -> SourceInfo:
    # ETA: TTRes 1, DTRes 1, SYNCRate 0, and RecordType 4 for raw too (its header routine sets 4).
    return SourceInfo(format=code, format_name=name, kernel=kern, record_size=record_size,
                      data_offset=data_offset,
                      record_type=FORMAT_QT_COMPRESSED if code == FORMAT_QT_COMPRESSED
                      else FORMAT_QT_BINARY,
                      mode=None, device=DEVICE, time_unit_ps=1.0, eta_time_unit_ps=1,
                      eta_dtime_unit_ps=1, marker_channels=0,
                      raw_marker_channels=MARKER_CHANNELS if markers else ())


def _parse_header(f, filename: str, file_size: int, info: SourceInfo, check: bool) -> None:
    """Record the header fields; with ``check`` (binary files, whose header is known from real
    samples) warn about a missing magic or a size field that disagrees with the file."""
    f.seek(0)
    head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        raise FormatError(f"file of {len(head)} bytes is shorter than the {HEADER_SIZE}-byte "
                          f"{info.format_name} header", filename, len(head))
    size_field, f8, f12 = struct.unpack_from("<III", head, 4)
    info.header = {"magic": head[:4].hex(" "), "file_size": size_field, "field_8": f8,
                   "field_12": f12, "id": head[24:40].hex()}
    present = info.file_records(file_size)
    if check and head[:4] != MAGIC:
        msg = (f"no quTAG magic (first bytes {head[:4].hex(' ')}); decoding the records after "
               f"the {HEADER_SIZE}-byte header as asked")
        warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=4)
        info.warnings.append(msg)
    elif check and size_field not in (0, file_size & 0xFFFFFFFF):
        # Bytes 4-7 held the file size in every sample seen; a mismatch means a cut copy.
        claimed = (size_field - HEADER_SIZE) // info.record_size
        info.header_records = claimed
        if claimed > present:
            msg = (f"header's size field says {size_field} bytes ({claimed} records) but the file "
                   f"holds {file_size} ({present} records): truncated?; decoding the records "
                   "present")
            info.data_loss["truncated"] = claimed - present
        else:
            msg = (f"header's size field says {size_field} bytes but the file holds {file_size}: "
                   "trailing data?; decoding all records present")
        warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=4)
        info.warnings.append(msg)
    else:
        info.header_records = present


def read_qutag_binary_header(f, filename: str, file_size: int) -> SourceInfo:
    """quTAG binary (FORMAT_QT_BINARY): 40-byte header, 10-byte records."""
    info = _source(FORMAT_QT_BINARY, "quTAG binary", decode_qutag_binary, RECORD_DTYPE.itemsize,
                   HEADER_SIZE, True)
    _parse_header(f, filename, file_size, info, check=True)
    return info


def read_qutag_compressed_header(f, filename: str, file_size: int) -> SourceInfo:
    """quTAG compressed (FORMAT_QT_COMPRESSED): 40-byte header, 5-byte records.

    The time unit is taken as 1 ps, as ETA does. That is doubtful: the vendor says the 37-bit
    stamps overflow every ~11 s, which fits ~81 ps units, not 1 ps (2**37 ps = 0.137 s); no
    sample file exists to decide (spec/file-formats.md section 5). The header content of
    compressed files is not known either, so it is recorded but not checked.
    """
    info = _source(FORMAT_QT_COMPRESSED, "quTAG compressed", decode_qutag_compressed,
                   COMPRESSED_SIZE, HEADER_SIZE, False)
    _parse_header(f, filename, file_size, info, check=False)
    return info


def read_qutag_raw_header(f, filename: str, file_size: int) -> SourceInfo:
    """quTAG raw (FORMAT_QT_RAW): 10-byte records from byte 0.

    ETA starts reading raw files at byte 8 (its header offset is never reset after reading the
    magic), which misaligns every record of a truly headerless file; we start at byte 0
    (eta-behaviour.md section 9.1 item 4).
    """
    info = _headerless(FORMAT_QT_RAW)
    info.header_records = info.file_records(file_size)
    return info


def _headerless(record_type, ttres=1, dtres=1, syncrate=0) -> SourceInfo:
    """Records without a header (raw files, hand-built Clips, ``clip_buffer(header=False)``).
    ETA ignores TTRes for quTAG: times are always ps."""
    if record_type == FORMAT_QT_COMPRESSED:
        return _source(FORMAT_QT_COMPRESSED, "quTAG compressed (headerless)",
                       decode_qutag_compressed, COMPRESSED_SIZE, 0, False)
    name = "quTAG raw" if record_type == FORMAT_QT_RAW else "quTAG binary (headerless)"
    return _source(FORMAT_QT_RAW if record_type == FORMAT_QT_RAW else FORMAT_QT_BINARY, name,
                   decode_qutag_binary, RECORD_DTYPE.itemsize, 0, True)


# --- detection --------------------------------------------------------------------------------

def _looks_binary(head: bytes) -> bool:
    """The first two records read as 10-byte records lie within 2**50 ps (19 min). Compressed
    records read this way give times whose bits 40-63 are unrelated time bits of two records."""
    (t0,) = struct.unpack_from("<q", head, HEADER_SIZE)
    (t1,) = struct.unpack_from("<q", head, HEADER_SIZE + 10)
    return abs(t1 - t0) < 2 ** 50


def _looks_compressed(head: bytes) -> bool:
    """The first four records read as 5-byte records lie within 2**33 ps of each other."""
    ts = [int.from_bytes(head[HEADER_SIZE + 5 * k: HEADER_SIZE + 5 * k + 5], "little")
          & int(TIME_MASK) for k in range(4)]
    w = int(WRAP)
    return all(min((b - a) % w, (a - b) % w) < 2 ** 33 for a, b in zip(ts, ts[1:]))


def _sniff_compressed(head: bytes, filename: str) -> bool:
    # Both header formats seem to share the magic (ETA takes it to mean binary). Call a file
    # compressed only when its first records are clearly not binary and clearly compressed;
    # anything in doubt stays binary, as in ETA.
    return (head[:4] == MAGIC and len(head) >= HEADER_SIZE + 20 and not _looks_binary(head)
            and _looks_compressed(head))


# --- writers ----------------------------------------------------------------------------------

def _int_times(times) -> np.ndarray:
    times = np.asarray(times)
    if times.dtype.kind == "f":
        times = np.round(times)
    return times.astype(np.int64)


def _channels(channels, n: int, hi: int, what: str) -> np.ndarray:
    ch = np.broadcast_to(np.asarray(channels, dtype=np.int64), (n,))
    if n and (ch.min() < 0 or ch.max() > hi):
        raise ValueError(f"{what} channels must be 0..{hi}; got {ch.min()}..{ch.max()}")
    return ch


def qutag_records(times, channels) -> np.ndarray:
    """10-byte binary/raw records (structured array, ``RECORD_DTYPE``) in the given order."""
    t = _int_times(times)
    rec = np.empty(len(t), RECORD_DTYPE)
    rec["time"] = t
    rec["channel"] = _channels(channels, len(t), 0xFFFF, "quTAG")
    return rec


def qutag_header(file_size: int) -> bytes:
    """A 40-byte header as the quTAG software writes it (fields as observed in real files)."""
    return MAGIC + struct.pack("<III", file_size & 0xFFFFFFFF, 0x800, 0x73) + bytes(24)


def write_qutag_binary(path, times, channels) -> None:
    """quTAG binary file: 40-byte header + 10-byte records (times in ps, channels 0..65535)."""
    body = qutag_records(times, channels).tobytes()
    with open(os.fspath(path), "wb") as f:
        f.write(qutag_header(HEADER_SIZE + len(body)))
        f.write(body)


def write_qutag_raw(path, times, channels) -> None:
    """quTAG raw file: the 10-byte records only."""
    with open(os.fspath(path), "wb") as f:
        f.write(qutag_records(times, channels).tobytes())


def compressed_records(times, channels) -> bytes:
    """5-byte records: the low 37 bits of each time (ps) and a 3-bit channel (0..7)."""
    t = _int_times(times)
    ch = _channels(channels, len(t), 7, "quTAG compressed")
    v = (t & int(TIME_MASK)).astype("<u8") | (ch.astype("<u8") << np.uint64(TIME_BITS))
    return v.view(np.uint8).reshape(-1, 8)[:, :COMPRESSED_SIZE].tobytes()


def write_qutag_compressed(path, times, channels, header: bool = True) -> None:
    """quTAG compressed file (40-byte header unless ``header=False``). Only the low 37 bits of
    each time are stored: a reader recovers the rest only if events are less than 2**36 ps
    apart."""
    body = compressed_records(times, channels)
    with open(os.fspath(path), "wb") as f:
        if header:
            f.write(qutag_header(HEADER_SIZE + len(body)))
        f.write(body)


ENTRIES = [
    FormatEntry(code=FORMAT_QT_BINARY, name="quTAG binary", open=read_qutag_binary_header,
                sniff=lambda head, fn: head[:4] == MAGIC, extensions=(".qutag",), priority=5,
                headerless=_headerless),
    FormatEntry(code=FORMAT_QT_COMPRESSED, name="quTAG compressed",
                open=read_qutag_compressed_header, sniff=_sniff_compressed, priority=6,
                headerless=_headerless),
    FormatEntry(code=FORMAT_QT_RAW, name="quTAG raw (no header)", open=read_qutag_raw_header,
                headerless=_headerless),
]
