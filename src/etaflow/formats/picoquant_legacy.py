"""Legacy PicoQuant TTTR files (.pt2 .pt3 .ht2 .ht3 .t3r): headers, a TimeHarp 200 kernel, writers.

These files predate PTU: an ASCII identification block, fixed little-endian binary C structs
(packed, no padding), an optional image ("special") header of 32-bit words, then 32-bit records.
The records of PT2/PT3/HT2/HT3 are the PTU ones (:mod:`._pq_kernels` decodes them); T3R has its
own layout, decoded by :func:`decode_th_t3r` here. Sources: PicoQuant's legacy file demos
(pt2demo.c, pt3demo.c, TimeHarp 200 v5.0 t3rdemo.c, the T3R v6.0 Matlab demo) and the
libpicoquant header dumps beside the samples in ``shared/data/picoquant-legacy``.

Byte layouts implemented (offset, size in bytes; i = int32, u = uint32, f = float32,
d = float64, q = int64, Q = uint64, cN = char[N]; ``[k]`` = repeated block)::

  Text header, PicoHarp 300 2.0 / HydraHarp 1.0, 2.0 / TimeHarp 200 6.0 (328 bytes)
      0  c16 Ident ("PicoHarp 300", "HydraHarp", "TimeHarp 200")   16 c6 FormatVersion
     22  c18 CreatorName   40 c12 CreatorVersion   52 c18 FileTime   70 c2 CRLF   72 c256 Comment
  Text header, TimeHarp 200 5.0 (304 bytes)
      0  c16 Ident   16 c6 FormatVersion   22 c6 HardwareVersion   28 c18 FileTime
     46  c2 CRLF     48 c256 Comment

  PicoHarp 300 (.pt2 .pt3), FormatVersion "2.0"
    328  i NumberOfCurves, BitsPerRecord, RoutingChannels, NumberOfBoards, ActiveCurve,
         MeasurementMode (2 = T2, 3 = T3), SubMode, RangeNo, Offset, AcquisitionTime, StopAt,
         StopOnOvfl, Restart, DisplayLinLog, DisplayTimeAxisFrom, DisplayTimeAxisTo,
         DisplayCountAxisFrom, DisplayCountAxisTo                                  (18 x 4)
    400  DisplayCurve[8] {i MapTo, i Show}    464 Param[3] {f Start, f Step, f Stop}
    500  i RepeatMode, RepeatsPerCurve, RepeatTime, RepeatWaitTime    516 c20 ScriptName
    536  Brd[0] (156 bytes): c16 HardwareIdent, c8 HardwareVersion, i HardwareSerial,
         i SyncDivider, i CFDZeroCross0, i CFDLevel0, i CFDZeroCross1, i CFDLevel1,
         f Resolution [ns] (584), i RouterModelCode, i RouterEnabled,
         RtCh[4] {i InputType, InputLevel, InputEdge, CFDPresent, CFDLevel, CFDZCross}
    692  i ExtDevices, Reserved[2], InpRate0 (704, the sync rate [Hz]), InpRate1, StopAfter,
         StopReason, u NumRecords (720), i ImgHdrSize (724)
    728  ImgHdrSize x u32 image header, then the records (PH-T2 / PH-T3).
    T2 tick: 4 ps (fixed by the hardware); T3: sync period 1/InpRate0, dtime Brd[0].Resolution.

  HydraHarp 400 (.ht2 .ht3), FormatVersion "1.0" (V1 overflow rule) or "2.0" (V2 rule)
    328  i NumberOfCurves, BitsPerRecord, ActiveCurve, MeasurementMode, SubMode, Binning
    352  d Resolution [ps]
    360  i Offset, AcquisitionTime, StopAt, StopOnOvfl, Restart, DisplayLinLog,
         DisplayTimeAxisFrom, DisplayTimeAxisTo, DisplayCountAxisFrom, DisplayCountAxisTo
    400  DisplayCurve[8], Param[3], Repeat*, ScriptName (as PicoHarp, up to 536)
    536  c16 HardwareIdent   552 c8 HardwarePartNo   560 i HardwareSerial   564 i NumberOfModules
    568  ModuleInfo[10] {i Model, i Version}    648 d BaseResolution [ps]   656 q InputsEnabled
    664  i InputChannelsPresent (= n), RefClockSource, ExtDevices, MarkerSettings, SyncDivider,
         SyncCFDLevel, SyncCFDZeroCross, SyncOffset
    696  InpChan[n] {i ModuleIdx, CFDLevel, CFDZeroCross, Offset}   696+16n  i InputRate[n]
    696+20n  i SyncRate [Hz], StopAfter, StopReason, ImgHdrSize, Q NumRecords (+16)
    720+20n  ImgHdrSize x u32 image header, then the records (HH-T2 / HH-T3).
    T2 tick: BaseResolution (1 ps); T3: sync period 1/SyncRate, dtime Resolution.

  TimeHarp 200 (.t3r), FormatVersion "5.0" (t = 304) or "6.0" (t = 328)
    t    i NumberOfChannels, NumberOfCurves, BitsPerChannel, RoutingChannels, NumberOfBoards,
         ActiveCurve, MeasurementMode (2 = TTTR), SubMode, RangeNo, Offset, AcquisitionTime,
         StopAt, StopOnOvfl, Restart, DisplayLinLog, DisplayTimeAxisFrom, DisplayTimeAxisTo,
         DisplayCountAxisFrom, DisplayCountAxisTo                                  (19 x 4)
    t+76 DisplayCurve[8], Param[3], Repeat*, ScriptName                   (up to t+212 = b)
    b    Brd[NumberOfBoards]: 6.0 only: c16 HardwareIdent, c8 HardwareVersion; then
         i BoardSerial, CFDZeroCross, CFDDiscriminatorMin, SYNCLevel, CurveOffset,
         f Resolution [ns]                                  (24 bytes; 48 in 6.0)
    then 5.0: i TTTRGlobClock [ns], Reserved[6];  6.0: i TTTRGlobClock, ExtDevices, Reserved[5]
         i SyncRate, AverageCFDRate, StopAfter, StopReason, u NumberOfRecords,
         i SpecHeaderLength                                                         (13 x 4)
         SpecHeaderLength x u32, then the records (592 / 640 with one board and no special header).
    Record (bit 31 = MSB): reserved 31 | valid 30 | route 29-28 | data 27-16 (12) | timetag 15-0.
    valid = 1: a photon, data = dtime bin, route = input.  valid = 0: data bit 11 (0x800) =
    time-tag overflow (+65 536), data bits 2-0 = marker mask (both may be set in one record).
    The time tag counts TTTRGlobClock periods (100 ns), not syncs: it is the T3 "sync" unit here.

Channel numbers follow ETA for every layout (see :mod:`._pq_kernels`); T3R route r -> r
(0-based, like HydraHarp T3). Markers -> marker offset + bit index.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import os
import struct
import warnings

import numpy as np

from .._jit import kernel
from ..errors import FormatError, FormatWarning
from . import _pq_kernels as K
from ._pq_encode import encode_t2, encode_t3
from .base import (IP_CHANNEL_OFFSET, IP_EMIT, MAX_EVENTS_PER_RECORD,
                   ST_EVENTS, ST_OVERFLOW, ST_OVERFLOWS, ST_RECORD, ST_SKIPPED, SourceInfo, Tag)
from .picoquant import RECORD_TYPES, STOP_REASONS, PtuRecordType, seconds_to_ps
from .registry import FORMAT_PQ_LEGACY, FormatEntry

__all__ = ["read_legacy_header", "decode_th_t3r", "encode_t3r", "write_pt2", "write_pt3",
           "write_ht2", "write_ht3", "write_t3r", "legacy_header_bytes"]

PICOHARP, HYDRAHARP, TIMEHARP = "PicoHarp 300", "HydraHarp", "TimeHarp 200"
IDENTS = (PICOHARP, HYDRAHARP, TIMEHARP)
VERSIONS = {PICOHARP: ("2.0",), HYDRAHARP: ("1.0", "2.0"), TIMEHARP: ("5.0", "6.0")}

PH_T2_TICK_PS = 4.0          # PicoHarp T2 time-tag unit, fixed by the hardware (pt2demo RESOL)
TH_T3R_WRAP = 65536          # TimeHarp 200 time-tag overflow period
T3R_OVERFLOW = 0x800         # data-field flag of an invalid record: time-tag overflow
T3R_MARKERS = 0x7            # data-field bits of an invalid record: marker mask
T3R_OVERFLOW_RECORD = T3R_OVERFLOW << 16   # valid = 0, data = 0x800, time tag 0
MAX_BOARDS = 4
MAX_INPUTS = 64
MAX_IMAGE_HEADER_WORDS = 1 << 20

_TYPE_NAMES = {"i": "int32", "I": "uint32", "f": "float32", "d": "float64", "q": "int64",
               "Q": "uint64", "s": "char"}


# --- field schemas (shared by the reader and the writers) -----------------------------------------

def _ints(*names, fmt="i"):
    return [(n, fmt) for n in names]


def _block(prefix: str, count: int, names, fmt: str = "i") -> list:
    """``count`` repeats of a struct: fields ``prefix[k].name``."""
    return [(f"{prefix}[{k}].{n}", fmt) for k in range(count) for n in names]


TEXT = [("Ident", "16s"), ("FormatVersion", "6s"), ("CreatorName", "18s"),
        ("CreatorVersion", "12s"), ("FileTime", "18s"), ("CRLF", "2s"), ("Comment", "256s")]
TEXT_TH5 = [("Ident", "16s"), ("FormatVersion", "6s"), ("HardwareVersion", "6s"),
            ("FileTime", "18s"), ("CRLF", "2s"), ("Comment", "256s")]

_DISPLAY_AXES = _ints("StopAt", "StopOnOvfl", "Restart", "DisplayLinLog", "DisplayTimeAxisFrom",
                      "DisplayTimeAxisTo", "DisplayCountAxisFrom", "DisplayCountAxisTo")
_DISPLAY = (_block("DisplayCurve", 8, ("MapTo", "Show"))
            + _block("Param", 3, ("Start", "Step", "Stop"), fmt="f")
            + _ints("RepeatMode", "RepeatsPerCurve", "RepeatTime", "RepeatWaitTime")
            + [("ScriptName", "20s")])

BIN_PH = (_ints("NumberOfCurves", "BitsPerRecord", "RoutingChannels", "NumberOfBoards",
                "ActiveCurve", "MeasurementMode", "SubMode", "RangeNo", "Offset", "AcquisitionTime")
          + _DISPLAY_AXES + _DISPLAY)
BIN_TH = (_ints("NumberOfChannels", "NumberOfCurves", "BitsPerChannel", "RoutingChannels",
                "NumberOfBoards", "ActiveCurve", "MeasurementMode", "SubMode", "RangeNo", "Offset",
                "AcquisitionTime")
          + _DISPLAY_AXES + _DISPLAY)
BIN_HH = (_ints("NumberOfCurves", "BitsPerRecord", "ActiveCurve", "MeasurementMode", "SubMode",
                "Binning")
          + [("Resolution", "d")] + _ints("Offset", "AcquisitionTime") + _DISPLAY_AXES + _DISPLAY
          + [("HardwareIdent", "16s"), ("HardwarePartNo", "8s")]
          + _ints("HardwareSerial", "NumberOfModules")
          + _block("ModuleInfo", 10, ("Model", "Version"))
          + [("BaseResolution", "d"), ("InputsEnabled", "q")]
          + _ints("InputChannelsPresent", "RefClockSource", "ExtDevices", "MarkerSettings",
                  "SyncDivider", "SyncCFDLevel", "SyncCFDZeroCross", "SyncOffset"))


def board_ph(i: int = 0) -> list:
    p = f"Brd[{i}]."
    return ([(p + "HardwareIdent", "16s"), (p + "HardwareVersion", "8s")]
            + _ints(*(p + n for n in ("HardwareSerial", "SyncDivider", "CFDZeroCross0", "CFDLevel0",
                                       "CFDZeroCross1", "CFDLevel1")))
            + [(p + "Resolution", "f")] + _ints(p + "RouterModelCode", p + "RouterEnabled")
            + _block(p + "RtCh", 4, ("InputType", "InputLevel", "InputEdge", "CFDPresent",
                                     "CFDLevel", "CFDZCross")))


def board_th(i: int, v6: bool) -> list:
    p = f"Brd[{i}]."
    ident = [(p + "HardwareIdent", "16s"), (p + "HardwareVersion", "8s")] if v6 else []
    return (ident + _ints(*(p + n for n in ("BoardSerial", "CFDZeroCross", "CFDDiscriminatorMin",
                                             "SYNCLevel", "CurveOffset")))
            + [(p + "Resolution", "f")])


def inputs_hh(n: int) -> list:
    return (_block("InpChan", n, ("ModuleIdx", "CFDLevel", "CFDZeroCross", "Offset"))
            + _ints(*(f"InputRate[{k}]" for k in range(n))))


TTTR_PH = (_ints("ExtDevices", "Reserved[0]", "Reserved[1]", "InpRate0", "InpRate1", "StopAfter",
                 "StopReason") + [("NumRecords", "I"), ("ImgHdrSize", "i")])
TTTR_HH = _ints("SyncRate", "StopAfter", "StopReason", "ImgHdrSize") + [("NumRecords", "Q")]
_TTTR_TH_TAIL = (_ints("SyncRate", "AverageCFDRate", "StopAfter", "StopReason")
                 + [("NumberOfRecords", "I"), ("SpecHeaderLength", "i")])
TTTR_TH5 = _ints("TTTRGlobClock", *(f"Reserved[{k}]" for k in range(6))) + _TTTR_TH_TAIL
TTTR_TH6 = (_ints("TTTRGlobClock", "ExtDevices", *(f"Reserved[{k}]" for k in range(5)))
            + _TTTR_TH_TAIL)


def _size(fields) -> int:
    return struct.calcsize("<" + "".join(f for _, f in fields))


# --- reading -----------------------------------------------------------------------------------

class _Cursor:
    """Reads consecutive header structs from a file, keeping every field as a Tag with its offset.

    ``values`` maps field name -> decoded value; a field that runs past the end of the file raises
    FormatError at that field's offset (a truncated header).
    """

    def __init__(self, f, filename: str, file_size: int):
        self.f, self.filename, self.file_size = f, filename, file_size
        self.pos = 0
        self.tags: list[Tag] = []
        self.values: dict = {}
        f.seek(0)

    def read(self, fields, what: str) -> None:
        fmt = "<" + "".join(f for _, f in fields)
        raw = self.f.read(struct.calcsize(fmt))
        if len(raw) < struct.calcsize(fmt):
            self._truncated(fields, len(raw), what)
        at = self.pos
        for (name, f), value in zip(fields, struct.unpack(fmt, raw)):
            if isinstance(value, bytes):
                value = value.split(b"\0", 1)[0].decode("latin-1")
            self.tags.append(Tag(name, -1, _TYPE_NAMES[f[-1]] + (f"[{f[:-1]}]" if f[:-1] else ""),
                                 value, at))
            self.values[name] = value
            at += struct.calcsize("<" + f)
        self.pos = at

    def _truncated(self, fields, got: int, what: str):
        at = self.pos
        for name, f in fields:
            size = struct.calcsize("<" + f)
            if at + size > self.pos + got:
                raise FormatError(f"the header ends inside the {what} (field {name}, {size} "
                                  f"bytes at {at}; the file has {self.file_size} bytes): "
                                  "truncated file", self.filename, at)
            at += size

    def read_words(self, count: int, name: str) -> np.ndarray:
        """``count`` uint32 words (image / special header)."""
        if count < 0 or count > MAX_IMAGE_HEADER_WORDS:
            raise FormatError(f"impossible {name} length {count} words", self.filename, self.pos)
        raw = self.f.read(4 * count)
        if len(raw) < 4 * count:
            raise FormatError(f"the {name} of {count} words runs past the end of the file "
                              f"({self.file_size} bytes): truncated file", self.filename, self.pos)
        self.pos += 4 * count
        return np.frombuffer(raw, dtype="<u4").copy()

    def field_offset(self, name: str) -> int:
        return next((t.offset for t in self.tags if t.name == name), 0)

    def fail(self, problem: str, field: str):
        raise FormatError(problem, self.filename, self.field_offset(field))


def _ident(head: bytes) -> str:
    return bytes(head[:16]).split(b"\0", 1)[0].decode("latin-1", "replace").strip()


def sniff(head: bytes, filename: str = "") -> bool:
    """True for the ASCII idents of legacy PicoQuant files. Never raises.

    Only the ident decides: the measurement mode lies beyond the sniffed bytes, and a histogram
    file (.phd/.hhd/.thd, same ident) is refused by the header reader with a clear message.
    """
    try:
        return _ident(head) in IDENTS
    except Exception:
        return False


def read_legacy_header(f, filename: str, file_size: int) -> SourceInfo:
    """Parse a legacy PicoQuant header from the open binary file ``f``."""
    cur = _Cursor(f, filename, file_size)
    head = f.read(22)
    ident = _ident(head)
    if ident not in IDENTS:
        raise FormatError(f"not a legacy PicoQuant TTTR file: ident {bytes(head[:16])!r}, expected "
                          f"one of {', '.join(IDENTS)}; pass format= to read another format",
                          filename, 0)
    if len(head) < 22:
        raise FormatError("the header ends inside the text header (FormatVersion): truncated file",
                          filename, 16)
    version = bytes(head[16:22]).split(b"\0", 1)[0].decode("latin-1").strip()
    if version not in VERSIONS[ident]:
        raise FormatError(f"{ident} file format version {version!r} is not supported (known: "
                          f"{', '.join(VERSIONS[ident])})", filename, 16)
    f.seek(0)
    if ident == PICOHARP:
        info = _read_picoharp(cur)
    elif ident == HYDRAHARP:
        info = _read_hydraharp(cur, version)
    else:
        info = _read_timeharp(cur, version)
    info.filename = filename
    info.tags = cur.tags
    info.header = cur.values
    _check_record_count(info, file_size, filename)
    _loss_flags(info)
    return info


def _mode(cur: _Cursor, allowed: dict) -> str:
    mode = cur.values["MeasurementMode"]
    if mode not in allowed:
        kinds = ", ".join(f"{k} ({v})" for k, v in allowed.items())
        cur.fail(f"MeasurementMode is {mode}: not a time-tagged (TTTR) file but e.g. an "
                 f"interactive histogram file; TTTR files have MeasurementMode {kinds}",
                 "MeasurementMode")
    return allowed[mode]


def _bits_per_record(cur: _Cursor) -> None:
    bits = cur.values["BitsPerRecord"]
    if bits != 32:
        cur.fail(f"BitsPerRecord is {bits}; PicoQuant TTTR records are 32 bits", "BitsPerRecord")


def _count(cur: _Cursor, name: str, low: int, high: int) -> int:
    n = cur.values[name]
    if not low <= n <= high:
        cur.fail(f"{name} is {n}, expected {low}..{high}: corrupt header", name)
    return n


def _positive(cur: _Cursor, name: str, value: float, unit: str) -> float:
    if not value > 0:
        cur.fail(f"{name} is {value} {unit}; a time unit must be > 0", name)
    return value


def _float32_ns_to_ps(value_ns: float) -> float:
    """A float32 resolution in ns -> ps, exact as the software meant it.

    The headers store e.g. 16 ps as the float32 0.016 ns = 0.01600000075995922; its shortest
    decimal that rounds to the same float32 ("0.016") is the value that was meant.
    """
    text = np.format_float_positional(np.float32(value_ns), unique=True, trim="-")
    return float(decimal.Decimal(text) * 1000)


def _sync_period_ps(cur: _Cursor, name: str) -> float:
    # T3 sync period = 1 / sync rate, like the PTU MeasDesc_GlobalResolution. The sync divider is
    # not applied (the focuspoint sample spans 10.96 s with 1/InpRate0 and a divider of 8).
    rate = _positive(cur, name, cur.values[name], "Hz")
    return seconds_to_ps(1.0 / rate)


def _read_picoharp(cur: _Cursor) -> SourceInfo:
    cur.read(TEXT, "text header")
    cur.read(BIN_PH, "binary header")
    mode = _mode(cur, {2: "T2", 3: "T3"})
    _bits_per_record(cur)
    # pt2demo/pt3demo read exactly one board header whatever NumberOfBoards says.
    cur.read(board_ph(0), "board header")
    cur.read(TTTR_PH, "TTTR header")
    cur.values["ImgHdr"] = cur.read_words(cur.values["ImgHdrSize"], "image header")
    rtype = PtuRecordType.PicoHarpT2 if mode == "T2" else PtuRecordType.PicoHarpT3
    res_ps = _float32_ns_to_ps(cur.values["Brd[0].Resolution"])
    if mode == "T2":
        units = (PH_T2_TICK_PS, 1.0)
    else:
        units = (_sync_period_ps(cur, "InpRate0"),
                 _positive(cur, "Brd[0].Resolution", res_ps, "ps"))
    return _source(cur, "PT" + mode[1], rtype, units, "NumRecords")


def _read_hydraharp(cur: _Cursor, version: str) -> SourceInfo:
    cur.read(TEXT, "text header")
    cur.read(BIN_HH, "binary header")
    mode = _mode(cur, {2: "T2", 3: "T3"})
    _bits_per_record(cur)
    n = _count(cur, "InputChannelsPresent", 1, MAX_INPUTS)
    cur.read(inputs_hh(n), "input channel headers")
    cur.read(TTTR_HH, "TTTR header")
    cur.values["ImgHdr"] = cur.read_words(cur.values["ImgHdrSize"], "image header")
    v1 = version == "1.0"
    if mode == "T2":
        rtype = PtuRecordType.HydraHarpT2 if v1 else PtuRecordType.HydraHarp2T2
        # T2 tags count the base resolution (1 ps), as PTU's GlobalResolution for HydraHarp T2;
        # "Resolution" is the histogram bin (0.5 ps in the v1.0 sample) and is not the tick.
        base = cur.values["BaseResolution"]
        units = (_positive(cur, "BaseResolution", base, "ps"), 1.0)
    else:
        rtype = PtuRecordType.HydraHarpT3 if v1 else PtuRecordType.HydraHarp2T3
        units = (_sync_period_ps(cur, "SyncRate"),
                 _positive(cur, "Resolution", float(cur.values["Resolution"]), "ps"))
    return _source(cur, "HT" + mode[1], rtype, units, "NumRecords")


def _read_timeharp(cur: _Cursor, version: str) -> SourceInfo:
    v6 = version == "6.0"
    cur.read(TEXT if v6 else TEXT_TH5, "text header")
    cur.read(BIN_TH, "binary header")
    _mode(cur, {2: "T3"})
    boards = _count(cur, "NumberOfBoards", 1, MAX_BOARDS)
    for i in range(boards):
        cur.read(board_th(i, v6), "board header")
    cur.read(TTTR_TH6 if v6 else TTTR_TH5, "TTTR header")
    cur.values["SpecHeader"] = cur.read_words(cur.values["SpecHeaderLength"], "special header")
    # The time tag counts the TTTR global clock (ns), per the format's demo: it is the T3 unit.
    clock_ps = 1000.0 * _positive(cur, "TTTRGlobClock", cur.values["TTTRGlobClock"], "ns")
    res_ps = _float32_ns_to_ps(cur.values["Brd[0].Resolution"])
    _positive(cur, "Brd[0].Resolution", res_ps, "ps")
    info = SourceInfo(format=FORMAT_PQ_LEGACY, format_name="PicoQuant legacy T3R",
                      kernel=decode_th_t3r, record_size=4, data_offset=cur.pos,
                      record_type=FORMAT_PQ_LEGACY, mode="T3", device=TIMEHARP, variant=0,
                      time_unit_ps=clock_ps, dtime_unit_ps=res_ps, eta_time_unit_ps=int(clock_ps),
                      eta_dtime_unit_ps=int(res_ps), marker_channels=3)
    info.header_records = int(cur.values["NumberOfRecords"])
    return info


def _source(cur: _Cursor, kind: str, rtype: PtuRecordType, units, count_field: str) -> SourceInfo:
    device, mode, kern, variant = RECORD_TYPES[rtype]
    time_unit, dtime_unit = units
    info = SourceInfo(format=FORMAT_PQ_LEGACY, format_name=f"PicoQuant legacy {kind}", kernel=kern,
                      record_size=4, data_offset=cur.pos, record_type=int(rtype), mode=mode,
                      device=device, variant=variant, time_unit_ps=time_unit,
                      dtime_unit_ps=dtime_unit, eta_time_unit_ps=int(time_unit),
                      # T2 has no dtime: its finest step is the tick, in both fields
                      eta_dtime_unit_ps=int(dtime_unit if mode == "T3" else time_unit))
    info.header_records = int(cur.values[count_field])
    return info


def _warn(info: SourceInfo, filename: str, msg: str) -> None:
    warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=5)
    info.warnings.append(msg)


def _check_record_count(info: SourceInfo, file_size: int, filename: str) -> None:
    claimed, present = info.header_records, info.file_records(file_size)
    if claimed > present:
        _warn(info, filename, f"header claims {claimed} records but the file holds {present}: "
                              "the file is truncated; decoding the records present")
        info.data_loss["truncated"] = claimed - present
    elif claimed < present:
        _warn(info, filename, f"file holds {present} records but the header claims {claimed}: "
                              "trailing data after the records; decoding all records present")


def _loss_flags(info: SourceInfo) -> None:
    stop = info.header.get("StopReason")
    if stop is not None and stop not in (0, 1):
        info.data_loss["stop_reason"] = STOP_REASONS.get(int(stop), f"code {stop}")


# --- TimeHarp 200 T3R kernel --------------------------------------------------------------------
#
# The first 65 536 wrap: phconvert treats every invalid record (valid bit 0) as an overflow;
# libpicoquant (the .data dump) counts only invalid records whose data field has bit 0x800 set.
# PicoQuant's own TimeHarp 200 v5.0 demo (t3rdemo.c) tests ``Channel & 0x800`` for the overflow
# and ``Channel & 0x007`` for markers, so libpicoquant is right. The v5.0 sample's first record,
# 0x00070004, is invalid with data 0x007 (markers 1-3 at tag 4) and no overflow flag: phconvert
# adds a wrap there, which is the one-wrap offset between the two readers. Decoding it as markers
# reproduces the dump exactly (tests/test_picoquant_legacy.py).

@kernel
def decode_th_t3r(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    recs = buf.view(np.uint32)
    emit = ip[IP_EMIT] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    ofl = state[ST_OVERFLOW]
    coff = ip[IP_CHANNEL_OFFSET]
    n = 0
    i = start
    while i < stop and (n <= cap or not emit):
        rec = np.int64(recs[i])
        tag = rec & 0xFFFF
        data = (rec >> 16) & 0xFFF
        if (rec >> 30) & 1:
            if emit:
                K._put(n, K._rel_time(ofl + tag, data, ip, fp),
                       np.uint8((coff + ((rec >> 28) & 3)) & 0xFF), ofl + tag, data,
                       out_t, out_c, out_ns, out_dt)
                n += 1
            state[ST_EVENTS] += 1
        else:
            bits = data & T3R_MARKERS
            if bits:
                # the demo computes the marker time before applying this record's overflow
                n = K._markers(n, bits, K._rel_time(ofl + tag, 0, ip, fp), ofl + tag, ip, state,
                               out_t, out_c, out_ns, out_dt)
            if data & T3R_OVERFLOW:
                ofl += TH_T3R_WRAP
                state[ST_OVERFLOWS] += 1
            elif bits == 0:
                state[ST_SKIPPED] += 1   # invalid record with no flag: the demo ignores it
        i += 1
    state[ST_OVERFLOW] = ofl
    state[ST_RECORD] += i - start
    return i, n


def _t3r_headerless(record_type: int, ttres: int, dtres: int, syncrate: int) -> SourceInfo:
    """Describe bare T3R records from ETA Clip fields (RecordType = FORMAT_PQ_LEGACY)."""
    unit = float(syncrate if syncrate > 0 else ttres)
    if unit <= 0:
        raise FormatError("hand-built Clip for T3R records needs SYNCRate_pspr (the global clock "
                          "period in ps, 100000 for TimeHarp 200) > 0")
    return SourceInfo(format=FORMAT_PQ_LEGACY, format_name="PicoQuant legacy T3R (headerless)",
                      kernel=decode_th_t3r, record_size=4, data_offset=0,
                      record_type=FORMAT_PQ_LEGACY, mode="T3", device=TIMEHARP, time_unit_ps=unit,
                      dtime_unit_ps=float(dtres or 1), eta_time_unit_ps=int(unit),
                      eta_dtime_unit_ps=int(dtres or 1), marker_channels=3)


# --- writers -------------------------------------------------------------------------------------

def encode_t3r(nsync, dtime, channels) -> np.ndarray:
    """T3R records for events: ``nsync`` in global-clock periods, ``dtime`` bins, ``channels`` =
    route 0..3, or ``-m`` for a marker record with mask ``m`` (1..7). One overflow record is
    inserted per 65 536 wrap."""
    coarse = np.ascontiguousarray(nsync, dtype=np.int64)
    fine = np.zeros_like(coarse) if dtime is None else np.ascontiguousarray(dtime, dtype=np.int64)
    chan = np.ascontiguousarray(channels, dtype=np.int64)
    if len(coarse) and (coarse[0] < 0 or np.any(np.diff(coarse) < 0)):
        raise ValueError("event times must be non-negative and non-decreasing to encode")
    _check_range("T3R route", chan[chan >= 0], 0, 3)
    _check_range("T3R marker mask", -chan[chan < 0], 1, T3R_MARKERS)
    _check_range("T3R dtime", fine[chan >= 0], 0, 0xFFF)
    low = (coarse % TH_T3R_WRAP).astype(np.uint32)
    photon = (np.uint32(1) << 30) | (chan.astype(np.uint32) << 28) | (fine.astype(np.uint32) << 16)
    marker = (-chan).astype(np.uint32) << 16
    recs = np.where(chan >= 0, photon, marker) | low
    # each event needs (its wrap - the previous event's wrap) overflow records before it
    wraps = np.diff(coarse // TH_T3R_WRAP, prepend=0)
    before = np.cumsum(wraps)
    out = np.full(len(coarse) + (int(before[-1]) if len(coarse) else 0), T3R_OVERFLOW_RECORD,
                  dtype=np.uint32)
    out[np.arange(len(coarse)) + before] = recs
    return out


def _check_range(what: str, values: np.ndarray, low: int, high: int) -> None:
    if len(values) and (values.min() < low or values.max() > high):
        raise ValueError(f"{what} must be in {low}..{high}, got {values.min()}..{values.max()}")


def _pack(fields, values: dict) -> bytes:
    """Pack ``fields`` with ``values`` (missing fields are 0 or empty strings)."""
    out = []
    for name, f in fields:
        v = values.get(name, b"" if f.endswith("s") else 0)
        if isinstance(v, str):
            v = v.encode("latin-1")
        out.append(struct.pack("<" + f, v))
    return b"".join(out)


def _text_values(ident: str, version: str, comment: str) -> dict:
    return {"Ident": ident, "FormatVersion": version, "CreatorName": "etaflow",
            "CreatorVersion": "0.1.0", "HardwareVersion": "2.0",
            "FileTime": _dt.datetime.now().strftime("%d/%m/%y %H:%M:%S"), "CRLF": "\r\n",
            "Comment": comment}


def legacy_header_bytes(kind: str, values: dict, *, version: str | None = None,
                        inputs: int = 4, image_header=()) -> bytes:
    """A complete legacy header for ``kind`` ("pt2", "pt3", "ht2", "ht3", "t3r"): every field
    is zero unless given in ``values`` (by the names of the module docstring)."""
    kind = kind.lower()
    words = np.asarray(image_header, dtype="<u4")
    if kind in ("pt2", "pt3"):
        v = {"NumberOfBoards": 1, "RoutingChannels": 4, "ImgHdrSize": len(words), **values}
        parts = [(TEXT, v), (BIN_PH, v), (board_ph(0), v), (TTTR_PH, v)]
    elif kind in ("ht2", "ht3"):
        v = {"InputChannelsPresent": inputs, "ImgHdrSize": len(words), **values}
        parts = [(TEXT, v), (BIN_HH, v), (inputs_hh(inputs), v), (TTTR_HH, v)]
    elif kind == "t3r":
        v6 = version == "6.0"
        v = {"NumberOfBoards": 1, "SpecHeaderLength": len(words), **values}
        parts = [(TEXT if v6 else TEXT_TH5, v), (BIN_TH, v), (board_th(0, v6), v),
                 (TTTR_TH6 if v6 else TTTR_TH5, v)]
    else:
        raise ValueError(f"unknown legacy kind {kind!r}")
    return b"".join(_pack(fields, vals) for fields, vals in parts) + words.tobytes()


def _write(path, head: bytes, records: np.ndarray) -> None:
    with open(os.fspath(path), "wb") as f:
        f.write(head)
        f.write(np.asarray(records, dtype="<u4").tobytes())


def _common(ident, version, mode, comment, n_records, records, count_field) -> dict:
    v = _text_values(ident, version, comment)
    v.update({"MeasurementMode": mode, "BitsPerRecord": 32, "AcquisitionTime": 1000,
              "StopAfter": 1000, "ScriptName": "TTTR Mode",
              count_field: len(records) if n_records is None else n_records})
    return v


def write_pt2(path, ticks, channels, *, comment: str = "", n_records: int | None = None,
              image_header=(), stop_reason: int = 0) -> None:
    """PicoHarp 300 T2 file: ``ticks`` in 4 ps units, ``channels`` 0..4 (0 = sync) or ``-mask``."""
    chan = np.asarray(channels, dtype=np.int64)
    _check_range("PicoHarp T2 channel", chan[chan >= 0], 0, 4)
    _check_range("PicoHarp marker mask", -chan[chan < 0], 1, 15)
    recs = encode_t2(ticks, chan, picoharp=True)
    v = _common(PICOHARP, "2.0", 2, comment, n_records, recs, "NumRecords")
    v.update({"Brd[0].HardwareIdent": PICOHARP, "Brd[0].HardwareVersion": "2.0",
              "Brd[0].SyncDivider": 1, "Brd[0].Resolution": PH_T2_TICK_PS / 1000,
              "StopReason": stop_reason})
    _write(path, legacy_header_bytes("pt2", v, image_header=image_header), recs)


def write_pt3(path, nsync, dtime, channels, *, sync_rate_hz: int = 80_000_000,
              resolution_ps: float = 4.0, comment: str = "", n_records: int | None = None,
              image_header=(), stop_reason: int = 0) -> None:
    """PicoHarp 300 T3 file: ``channels`` 1..4 or ``-mask``; sync period = 1 / ``sync_rate_hz``."""
    chan = np.asarray(channels, dtype=np.int64)
    _check_range("PicoHarp T3 channel", chan[chan >= 0], 1, 4)
    _check_range("PicoHarp marker mask", -chan[chan < 0], 1, 15)
    _check_range("PicoHarp dtime", np.asarray(dtime)[chan >= 0], 0, 0xFFF)
    recs = encode_t3(nsync, dtime, chan, picoharp=True)
    v = _common(PICOHARP, "2.0", 3, comment, n_records, recs, "NumRecords")
    v.update({"Brd[0].HardwareIdent": PICOHARP, "Brd[0].HardwareVersion": "2.0",
              "Brd[0].SyncDivider": 1, "Brd[0].Resolution": resolution_ps / 1000,
              "InpRate0": int(sync_rate_hz), "StopReason": stop_reason})
    _write(path, legacy_header_bytes("pt3", v, image_header=image_header), recs)


def _hh_values(version, mode, comment, n_records, recs, inputs, sync_rate_hz, resolution_ps,
               stop_reason) -> dict:
    if version not in VERSIONS[HYDRAHARP]:
        raise ValueError(f"HydraHarp format version must be one of {VERSIONS[HYDRAHARP]}")
    v = _common(HYDRAHARP, version, mode, comment, n_records, recs, "NumRecords")
    v.update({"HardwareIdent": "HydraHarp 400", "BaseResolution": 1.0, "Resolution": resolution_ps,
              "InputsEnabled": (1 << inputs) - 1, "SyncDivider": 1, "SyncRate": int(sync_rate_hz),
              "StopReason": stop_reason})
    return v


def write_ht2(path, ticks, channels, *, version: str = "2.0", inputs: int = 4,
              sync_rate_hz: int = 0, comment: str = "", n_records: int | None = None,
              image_header=(), stop_reason: int = 0) -> None:
    """HydraHarp T2 file (1 ps ticks): ``channels`` 0 = sync, k = input k (1..inputs), or ``-mask``.
    Version "1.0" writes V1 overflow records (period 33 552 000), "2.0" count-carrying ones."""
    chan = np.asarray(channels, dtype=np.int64)
    _check_range("HydraHarp T2 channel", chan[chan >= 0], 0, inputs)
    _check_range("HydraHarp marker mask", -chan[chan < 0], 1, 15)
    recs = encode_t2(ticks, chan, hydraharp_v1=version == "1.0")
    v = _hh_values(version, 2, comment, n_records, recs, inputs, sync_rate_hz, 1.0, stop_reason)
    _write(path, legacy_header_bytes("ht2", v, inputs=inputs, image_header=image_header), recs)


def write_ht3(path, nsync, dtime, channels, *, version: str = "2.0", inputs: int = 4,
              sync_rate_hz: int = 80_000_000, resolution_ps: float = 4.0, comment: str = "",
              n_records: int | None = None, image_header=(), stop_reason: int = 0) -> None:
    """HydraHarp T3 file: ``channels`` = input - 1 (0..inputs-1) or ``-mask``."""
    chan = np.asarray(channels, dtype=np.int64)
    _check_range("HydraHarp T3 channel", chan[chan >= 0], 0, inputs - 1)
    _check_range("HydraHarp marker mask", -chan[chan < 0], 1, 15)
    _check_range("HydraHarp dtime", np.asarray(dtime)[chan >= 0], 0, 0x7FFF)
    recs = encode_t3(nsync, dtime, chan, hydraharp_v1=version == "1.0")
    v = _hh_values(version, 3, comment, n_records, recs, inputs, sync_rate_hz, resolution_ps,
                   stop_reason)
    _write(path, legacy_header_bytes("ht3", v, inputs=inputs, image_header=image_header), recs)


def write_t3r(path, nsync, dtime, channels, *, version: str = "5.0", glob_clock_ns: int = 100,
              resolution_ps: float = 70.0, sync_rate_hz: int = 5_000_000, comment: str = "",
              n_records: int | None = None, special_header=(), stop_reason: int = 0) -> None:
    """TimeHarp 200 T3R file: ``nsync`` in global-clock periods, ``channels`` = route 0..3 or
    ``-mask`` (1..7)."""
    if version not in VERSIONS[TIMEHARP]:
        raise ValueError(f"TimeHarp 200 format version must be one of {VERSIONS[TIMEHARP]}")
    recs = encode_t3r(nsync, dtime, channels)
    v = _common(TIMEHARP, version, 2, comment, n_records, recs, "NumberOfRecords")
    v.update({"NumberOfChannels": 4096, "BitsPerChannel": 32, "RoutingChannels": 4,
              "Brd[0].HardwareIdent": TIMEHARP, "Brd[0].HardwareVersion": "2.0",
              "Brd[0].Resolution": resolution_ps / 1000, "TTTRGlobClock": int(glob_clock_ns),
              "SyncRate": int(sync_rate_hz), "StopReason": stop_reason})
    _write(path, legacy_header_bytes("t3r", v, version=version, image_header=special_header), recs)


ENTRIES = [
    FormatEntry(code=FORMAT_PQ_LEGACY, name="PicoQuant legacy (PT2/PT3/HT2/HT3/T3R)",
                open=read_legacy_header, sniff=sniff,
                extensions=(".pt2", ".pt3", ".ht2", ".ht3", ".t3r"), priority=5,
                headerless=_t3r_headerless),
]
