"""PicoQuant unified tagged container (.ptu, also ETA's .timeres test files): header, records, writer.

Layout (spec/file-formats.md section 1): 8-byte magic ``PQTTTR``, 8-byte version, then 48-byte tags
``Ident[32] | Idx int32 | TypeCode uint32 | Value int64`` (+ payload for the variable-size types)
up to ``Header_End``; the 32-bit records start right after it.
"""

from __future__ import annotations

import datetime as _dt
import enum
import struct
import warnings

import numpy as np

from ..errors import FormatError, FormatWarning
from . import _pq_kernels as K
from .base import SourceInfo, Tag

__all__ = ["PtuRecordType", "read_ptu_header", "write_ptu", "RECORD_TYPES"]

MAGIC = b"PQTTTR"
TAG_SIZE = 48


class TagType(enum.IntEnum):
    """PicoQuant tag type codes."""

    Empty8 = 0xFFFF0008
    Bool8 = 0x00000008
    Int8 = 0x10000008
    BitSet64 = 0x11000008
    Color8 = 0x12000008
    Float8 = 0x20000008
    TDateTime = 0x21000008
    Float8Array = 0x2001FFFF
    AnsiString = 0x4001FFFF
    WideString = 0x4002FFFF
    BinaryBlob = 0xFFFFFFFF


VARIABLE_TYPES = {TagType.Float8Array, TagType.AnsiString, TagType.WideString, TagType.BinaryBlob}


class PtuRecordType(enum.IntEnum):
    """``TTResultFormat_TTTRRecType`` codes: SubID | format 01 | T mode | hardware."""

    PicoHarpT2 = 0x00010203
    PicoHarpT3 = 0x00010303
    HydraHarpT2 = 0x00010204        # HydraHarp firmware V1: T2 overflow period 33 552 000
    HydraHarpT3 = 0x00010304
    HydraHarp2T2 = 0x01010204
    HydraHarp2T3 = 0x01010304
    TimeHarp260NT2 = 0x00010205
    TimeHarp260NT3 = 0x00010305
    TimeHarp260PT2 = 0x00010206
    TimeHarp260PT3 = 0x00010306
    GenericT2 = 0x00010207          # MultiHarp 150/160, PicoHarp 330
    GenericT3 = 0x00010307


# record type -> (device, mode, kernel, variant)
RECORD_TYPES = {
    PtuRecordType.PicoHarpT2: ("PicoHarp 300", "T2", K.decode_ph_t2, 0),
    PtuRecordType.PicoHarpT3: ("PicoHarp 300", "T3", K.decode_ph_t3, 0),
    PtuRecordType.HydraHarpT2: ("HydraHarp V1", "T2", K.decode_hh_t2, 1),
    PtuRecordType.HydraHarpT3: ("HydraHarp V1", "T3", K.decode_hh_t3, 1),
    PtuRecordType.HydraHarp2T2: ("HydraHarp V2", "T2", K.decode_hh_t2, 2),
    PtuRecordType.HydraHarp2T3: ("HydraHarp V2", "T3", K.decode_hh_t3, 2),
    PtuRecordType.TimeHarp260NT2: ("TimeHarp 260N", "T2", K.decode_hh_t2, 2),
    PtuRecordType.TimeHarp260NT3: ("TimeHarp 260N", "T3", K.decode_hh_t3, 2),
    PtuRecordType.TimeHarp260PT2: ("TimeHarp 260P", "T2", K.decode_hh_t2, 2),
    PtuRecordType.TimeHarp260PT3: ("TimeHarp 260P", "T3", K.decode_hh_t3, 2),
    PtuRecordType.GenericT2: ("MultiHarp/PicoHarp 330 (generic)", "T2", K.decode_hh_t2, 2),
    PtuRecordType.GenericT3: ("MultiHarp/PicoHarp 330 (generic)", "T3", K.decode_hh_t3, 2),
}

# TTResult_StopReason codes (ptufile's PtuStopReason) and MDescWarningFlags bits that mean lost data
STOP_REASONS = {0: "time over", 1: "manual", 2: "overflow", 3: "error", -1: "FIFO overrun",
                -2: "queue overrun", -3: "sync loss", -4: "reference clock loss",
                -5: "hardware error"}
LOSS_WARNING_BITS = {0x80: "events dropped"}


def seconds_to_ps(seconds: float) -> float:
    """Seconds -> ps, snapping float noise (4.000000000000001 -> 4.0) but keeping real fractions."""
    ps = float(seconds) * 1e12
    r = round(ps)
    return float(r) if abs(ps - r) <= 1e-9 * max(1.0, abs(ps)) else ps


def _tdatetime(days: float) -> _dt.datetime:
    return _dt.datetime(1899, 12, 30, tzinfo=_dt.timezone.utc) + _dt.timedelta(days=days)


def read_tags(f, filename: str, start: int = 16) -> tuple[list[Tag], int]:
    """Walk the tag list from byte ``start``; return the tags and the byte offset after Header_End."""
    tags: list[Tag] = []
    pos = start
    f.seek(pos)
    while True:
        tag_at = pos
        raw = f.read(TAG_SIZE)
        if len(raw) < TAG_SIZE:
            raise FormatError("header ends before the Header_End tag (truncated file?)",
                              filename, pos)
        ident = raw[:32].split(b"\0", 1)[0].decode("latin-1")
        idx, typ = struct.unpack_from("<iI", raw, 32)
        (ivalue,) = struct.unpack_from("<q", raw, 40)
        try:
            ttype = TagType(typ)
        except ValueError:
            raise FormatError(f"unknown tag type 0x{typ:08X} in tag {ident!r}; the header is "
                              "corrupt or not a PicoQuant file", filename, pos) from None
        value: object
        payload_at = pos + TAG_SIZE
        if ttype in VARIABLE_TYPES:
            if ivalue < 0:
                raise FormatError(f"tag {ident!r} has a negative payload length {ivalue}",
                                  filename, pos)
            payload = f.read(ivalue)
            if len(payload) < ivalue:
                raise FormatError(f"tag {ident!r} payload of {ivalue} bytes runs past the end of "
                                  "the file (truncated header)", filename, payload_at)
            if ttype == TagType.Float8Array:
                value = np.frombuffer(payload[: len(payload) // 8 * 8], dtype="<f8").copy()
            elif ttype == TagType.AnsiString:
                value = payload.split(b"\0", 1)[0].decode("latin-1")
            elif ttype == TagType.WideString:
                value = payload.decode("utf-16-le", errors="replace").split("\0", 1)[0]
            else:
                value = bytes(payload)
            pos = payload_at + ivalue
        else:
            if ttype == TagType.Float8:
                (value,) = struct.unpack_from("<d", raw, 40)
            elif ttype == TagType.TDateTime:
                (days,) = struct.unpack_from("<d", raw, 40)
                value = _tdatetime(days)
            elif ttype == TagType.Bool8:
                value = ivalue != 0
            elif ttype == TagType.Empty8:
                value = None
            else:
                value = ivalue
            pos = payload_at
        tags.append(Tag(ident, idx, ttype.name, value, tag_at))
        if ident == "Header_End":
            return tags, pos


def _tag_dict(tags: list[Tag], filename: str) -> dict:
    """name -> value for scalars, ``name[i]`` keys for indexed tags; warn on odd indices."""
    out: dict = {}
    last_index: dict[str, int] = {}
    for t in tags:
        if t.index >= 0:
            prev = last_index.get(t.name, -1)
            if t.index <= prev:
                warnings.warn(f"{filename}: tag {t.name} index {t.index} out of order or repeated "
                              f"(after {prev}); the last value wins", FormatWarning, stacklevel=4)
            last_index[t.name] = t.index
            out[f"{t.name}[{t.index}]"] = t.value
            out.setdefault(t.name, t.value)
        else:
            out[t.name] = t.value
    return out


def read_ptu_header(f, filename: str, file_size: int) -> SourceInfo:
    """Parse a PTU header from the open binary file ``f``."""
    f.seek(0)
    magic = f.read(16)
    if magic[:6] != MAGIC:
        raise FormatError(f"not a PicoQuant PTU file: magic {magic[:8]!r}, expected "
                          f"{MAGIC!r}; pass format= to read another format", filename, 0)
    tags, data_offset = read_tags(f, filename)
    hdr = _tag_dict(tags, filename)
    hdr["File_Version"] = magic[8:16].split(b"\0", 1)[0].decode("latin-1")

    def need(name):
        if name not in hdr:
            raise FormatError(f"mandatory tag {name} is missing from the header", filename, 16)
        return hdr[name]

    rtype = int(need("TTResultFormat_TTTRRecType"))
    try:
        rtype_e = PtuRecordType(rtype)
    except ValueError:
        at = next((t.offset for t in tags if t.name == "TTResultFormat_TTTRRecType"), 16)
        raise FormatError(f"unknown TTTR record type 0x{rtype:08X} ({rtype}); known types: "
                          + ", ".join(f"{r.name}=0x{r.value:08X}" for r in PtuRecordType),
                          filename, at) from None
    device, mode, kern, variant = RECORD_TYPES[rtype_e]
    bits = hdr.get("TTResultFormat_BitsPerRecord", 32)
    if bits != 32:
        raise FormatError(f"TTResultFormat_BitsPerRecord is {bits}; PicoQuant TTTR records are 32 bits",
                          filename, 16)
    info_warnings: list[str] = []
    meas_mode = hdr.get("Measurement_Mode")
    if meas_mode is not None and meas_mode != int(mode[1]):
        msg = (f"Measurement_Mode is {meas_mode} but record type {rtype_e.name} holds {mode} "
               f"records; decoding as {mode} (the record type decides the layout)")
        warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=3)
        info_warnings.append(msg)

    glob = float(need("MeasDesc_GlobalResolution"))
    res = float(hdr.get("MeasDesc_Resolution", glob))
    if glob <= 0 or (mode == "T3" and res <= 0):
        raise FormatError(f"impossible resolutions in header: global {glob} s, resolution {res} s",
                          filename, 16)
    info = SourceInfo(
        format=0, format_name="PicoQuant PTU", kernel=kern, record_size=4,
        data_offset=data_offset, record_type=rtype, mode=mode, device=device, variant=variant,
        time_unit_ps=seconds_to_ps(glob), dtime_unit_ps=seconds_to_ps(res) if mode == "T3" else 1.0,
        eta_time_unit_ps=int(glob * 1e12), eta_dtime_unit_ps=int(res * 1e12) if mode == "T3" else 1,
        filename=filename, tags=tags, header=hdr, warnings=info_warnings,
    )
    if mode == "T2":
        # ETA's T2 DTRes_pspr is whatever MeasDesc_Resolution truncates to; keep it for Clip fields.
        info.eta_dtime_unit_ps = int(res * 1e12)
    _header_records(info, hdr, file_size, filename)
    _loss_flags(info, hdr)
    return info


def _header_records(info: SourceInfo, hdr: dict, file_size: int, filename: str) -> None:
    claimed = hdr.get("TTResult_NumberOfRecords")
    present = info.file_records(file_size)
    info.header_records = claimed
    if claimed is None or claimed <= 0:
        msg = (f"TTResult_NumberOfRecords is {claimed}; using the file size instead "
               f"({present} records)")
        warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=4)
        info.warnings.append(msg)
    elif claimed > present:
        msg = (f"header claims {claimed} records but the file holds {present}: the file is "
               "truncated (or still being written); decoding the records present")
        warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=4)
        info.warnings.append(msg)
        info.data_loss["truncated"] = claimed - present
    elif claimed < present:
        msg = (f"file holds {present} records but the header claims {claimed}: trailing data "
               "after the records; decoding all records present")
        warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=4)
        info.warnings.append(msg)


def _loss_flags(info: SourceInfo, hdr: dict) -> None:
    stop = hdr.get("TTResult_StopReason")
    if stop is not None and stop not in (0, 1):
        info.data_loss["stop_reason"] = STOP_REASONS.get(int(stop), f"code {stop}")
    flags = hdr.get("TTResult_MDescWarningFlags")
    if flags:
        for bit, what in LOSS_WARNING_BITS.items():
            if int(flags) & bit:
                info.data_loss[what] = True


# --- writer ---------------------------------------------------------------------------------------

def _tag_bytes(name: str, value, ttype: TagType, index: int = -1) -> bytes:
    head = name.encode("latin-1")[:31].ljust(32, b"\0")
    if ttype in VARIABLE_TYPES:
        if ttype == TagType.AnsiString:
            payload = value.encode("latin-1") + b"\0"
        elif ttype == TagType.WideString:
            payload = value.encode("utf-16-le") + b"\0\0"
        elif ttype == TagType.Float8Array:
            payload = np.asarray(value, dtype="<f8").tobytes()
        else:
            payload = bytes(value)
        payload = payload.ljust((len(payload) + 7) // 8 * 8, b"\0")
        return head + struct.pack("<iIq", index, ttype, len(payload)) + payload
    if ttype in (TagType.Float8, TagType.TDateTime):
        return head + struct.pack("<iId", index, ttype, float(value))
    return head + struct.pack("<iIq", index, ttype, int(value or 0))


def ptu_header_bytes(record_type: int, global_resolution_s: float, resolution_s: float,
                     n_records: int, extra_tags=(), sync_divider: int = 1,
                     version: bytes = b"1.0.00") -> bytes:
    """Build a PTU header. ``extra_tags``: (name, value, TagType[, index]) tuples written first."""
    mode = RECORD_TYPES[PtuRecordType(record_type)][1]
    parts = [MAGIC.ljust(8, b"\0"), version.ljust(8, b"\0")]
    for t in extra_tags:
        parts.append(_tag_bytes(t[0], t[1], t[2], *(t[3:] or ())))
    parts += [
        _tag_bytes("Measurement_Mode", int(mode[1]), TagType.Int8),
        _tag_bytes("Measurement_SubMode", 0, TagType.Int8),
        _tag_bytes("MeasDesc_GlobalResolution", global_resolution_s, TagType.Float8),
        _tag_bytes("MeasDesc_Resolution", resolution_s, TagType.Float8),
        _tag_bytes("HWSync_Divider", sync_divider, TagType.Int8),
        _tag_bytes("TTResult_SyncRate", round(1 / global_resolution_s) if mode == "T3" else 0,
                   TagType.Int8),
        _tag_bytes("TTResult_NumberOfRecords", n_records, TagType.Int8),
        _tag_bytes("TTResultFormat_TTTRRecType", record_type, TagType.Int8),
        _tag_bytes("TTResultFormat_BitsPerRecord", 32, TagType.Int8),
        _tag_bytes("Header_End", None, TagType.Empty8),
    ]
    return b"".join(parts)


def write_ptu(path, records: np.ndarray, record_type: int, global_resolution_s: float,
              resolution_s: float | None = None, extra_tags=(), n_records: int | None = None,
              sync_divider: int = 1) -> None:
    """Write raw 32-bit ``records`` (see :mod:`etaflow.formats.encode`) behind a PTU header."""
    records = np.asarray(records, dtype="<u4")
    head = ptu_header_bytes(record_type, global_resolution_s,
                            global_resolution_s if resolution_s is None else resolution_s,
                            len(records) if n_records is None else n_records, extra_tags,
                            sync_divider)
    with open(path, "wb") as f:
        f.write(head)
        f.write(records.tobytes())
