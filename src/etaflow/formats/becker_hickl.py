"""Becker & Hickl SPC FIFO files (.spc + .set): header, decode kernel and writer.

Layout (spec/file-formats.md section 3; bit 31 = MSB, little-endian uint32)::

    .spc header word (the first 4 bytes; every record after it has the same size)
        bit  31     always 1
        bits 30-27  0 on SPC-1xx/8xx (QC cards: number of routing bits)
        bit  26     raw / diagnostic data
        bit  25     markers enabled
        bit  24     reserved
        bits 23-0   macrotime clock in units of 0.1 ns (95 -> 9.5 ns)

    record (SPC-130/140/150/160/180/830, "SPC-1xx/8xx")
        bit  31     INVALID
        bit  30     MTOV     macrotime overflow
        bit  29     GAP      the FIFO overflowed before this record: data were lost
        bit  28     MARK
        bits 27-16  ADC      12-bit TAC/ADC value; the microtime is 4095 - ADC (inverted)
        bits 15-12  ROUT     routing (detector) bits; marker bits in a marker record
        bits 11-0   MT       macrotime, wraps every 4096 ticks

    INVALID MTOV MARK   meaning
      0      x    x     photon; MTOV = one 4096-tick wrap happened *before* it
      1      1    0     multiple overflow: bits 27-0 count the 4096-tick wraps
      1      x    1     marker record: ROUT holds the marker bits, MTOV a single wrap
      1      0    0     invalid photon: carries nothing

The ``.set`` file beside the ``.spc`` (same stem) starts with a 42-byte binary header
(``revision`` int16, then the offsets and lengths of the ASCII sections ...), followed by
``*IDENTIFICATION ... *END`` and ``*SETUP ... *END``; the setup lists ``#XX [NAME,T,VALUE]``
parameters between ``SYS_PARA_BEGIN:`` and ``SYS_PARA_END:``. The card model is
``(revision & 0x0FF0) >> 4``; the microtime bin is ``SP_TAC_R / (SP_TAC_G * SP_ADC_RE)``.

Exact mode decodes the records as the hardware means them. ETA mode (``ip[IP_ETA]``) reproduces
ETA 0.9.9 bit for bit (spec/eta-behaviour.md section 1.8), bugs included: the clock field's low 16
bits used as ps, the ADC not inverted, every record with MTOV dropped and counted as one wrap
(photons and count-carrying records alike), GAP ignored, marker records dropped (INVALID is set).
"""

from __future__ import annotations

import os
import re
import struct
import warnings

import numpy as np

from .._jit import kernel
from ..errors import FormatError, FormatWarning
from ._pq_kernels import _markers, _put, _rel_time
from .base import (IP_CHANNEL_OFFSET, IP_DTRES, IP_EMIT, IP_ETA, IP_MARKER_OFFSET, IP_TIME_SHIFT,
                   IP_TTRES, MAX_EVENTS_PER_RECORD, ST_AUX, ST_AUX2, ST_EVENTS, ST_LOSS_RECORDS,
                   ST_MARKERS, ST_OVERFLOW, ST_OVERFLOWS, ST_RECORD, ST_SKIPPED, SourceInfo, Tag)
from .registry import FORMAT_BH_spc_4bytes, FormatEntry

__all__ = ["read_spc_header", "read_set_file", "decode_spc", "encode_spc", "write_spc",
           "write_spc_records", "spc_header_word", "set_file_bytes", "find_set_file", "CARDS"]

FORMAT_NAME = "Becker & Hickl SPC"
HEADER_BYTES = 4
MT_WRAP = 4096                  # macrotime ticks per MTOV
ADC_MAX = 4095
ADC_CHANNELS = 4096
MAX_OVERFLOW_COUNT = (1 << 28) - 1

INVALID = np.uint32(1 << 31)
MTOV = np.uint32(1 << 30)
GAP = np.uint32(1 << 29)
MARK = np.uint32(1 << 28)

# Decoder state slots this format uses besides the common ones.
ST_ETA_OVERFLOW = ST_AUX        # ETA's overflow sum (4096 per record with MTOV), in macro ticks
ST_SINGLE_MTOV = ST_AUX2        # photon/marker records that carried a single MTOV flag

# Card code ((revision & 0x0FF0) >> 4) -> model name (phconvert's table, from B&H's headers).
CARDS = {
    0x20: "SPC-130", 0x21: "SPC-600", 0x22: "SPC-630", 0x23: "SPC-700", 0x24: "SPC-730",
    0x25: "SPC-830", 0x26: "SPC-140", 0x27: "SPC-930", 0x28: "SPC-150", 0x29: "DPC-230",
    0x2A: "SPC-130EM", 0x2B: "SPC-160", 0x2E: "SPC-150N", 0x80: "SPC-150NX", 0x81: "SPC-160X",
    0x82: "SPC-160PCIE", 0x83: "SPC-130EMN", 0x84: "SPC-180N", 0x85: "SPC-180NX",
    0x86: "SPC-180NXX", 0x87: "SPC-180N-USB", 0x88: "SPC-130IN", 0x89: "SPC-130INX",
    0x8A: "SPC-130INXX", 0x8B: "SPC-QC-104", 0x8C: "SPC-QC-004", 0x8D: "SPC-QC-106",
    0x8E: "SPC-QC-006",
}
# Cards whose FIFO records do not use the SPC-1xx/8xx layout above.
OTHER_LAYOUTS = {
    0x21: "SPC-600/630 records (48-bit, or 32-bit with an 8-bit ADC)",
    0x22: "SPC-600/630 records (48-bit, or 32-bit with an 8-bit ADC)",
    0x23: "SPC-700/730/930 records", 0x24: "SPC-700/730/930 records",
    0x27: "SPC-700/730/930 records", 0x29: "DPC-230 records",
    0x8B: "SPC-QC-X04 records", 0x8C: "SPC-QC-X04 records",
    0x8D: "SPC-QC-X06 records", 0x8E: "SPC-QC-X06 records",
}

# The .set binary header (42 bytes; field names from B&H's SPC_data_file_structure.h).
SET_HEADER = struct.Struct("<hiHiHiHIiHHHIHH")
SET_FIELDS = ("revision", "info_offs", "info_length", "setup_offs", "setup_length",
              "data_block_offs", "no_of_data_blocks", "data_block_length", "meas_desc_block_offs",
              "no_of_meas_desc_blocks", "meas_desc_block_length", "header_valid", "reserved1",
              "reserved2", "chksum")
SET_HEADER_VALID = 0x5555
SET_CHECKSUM = 0x55AA          # the 21 uint16 words of the header sum to this
_PARAM = re.compile(r"#(\w+)\s*\[(\w+),(\w),(.*)\]\s*$")


# --- decode kernel ------------------------------------------------------------------------------

@kernel
def _account(rec, state, ofl, eta_ofl):
    """Advance both overflow sums over one record and count what kind of record it is.

    Done the same way in every mode, so one state scan (always exact) serves both modes.
    Returns the new exact and ETA overflow sums, in macro ticks.
    """
    invalid = (rec >> 31) & 1
    mtov = (rec >> 30) & 1
    mark = (rec >> 28) & 1
    multi = invalid == 1 and mtov == 1 and mark == 0
    if mtov:
        eta_ofl += MT_WRAP                      # ETA: one wrap per MTOV bit, whatever the record
    if multi:
        ofl += MT_WRAP * (rec & 0x0FFFFFFF)     # multiple-overflow record: bits 27-0 count wraps
        state[ST_OVERFLOWS] += 1
    elif mtov:
        ofl += MT_WRAP                          # a single wrap *before* this photon or marker
        state[ST_SINGLE_MTOV] += 1
    if invalid == 1 and not multi and (mark == 0 or (rec >> 12) & 0xF == 0):
        state[ST_SKIPPED] += 1                  # invalid photon, or a marker without marker bits
    if (rec >> 29) & 1:
        state[ST_LOSS_RECORDS] += 1             # GAP: data were lost before this record
    return ofl, eta_ofl


@kernel
def _exact_events(n, rec, ofl, ip, fp, state, out_t, out_c, out_ns, out_dt):
    """The events of one record as the hardware means them (``ofl`` includes its MTOV)."""
    mt = ofl + (rec & 0xFFF)
    rout = (rec >> 12) & 0xF
    if (rec >> 31) & 1 == 0:                    # photon (a MARK bit here is not used by the cards)
        if ip[IP_EMIT]:
            dtime = ADC_MAX - ((rec >> 16) & 0xFFF)     # the TAC runs backwards
            _put(n, _rel_time(mt, dtime, ip, fp), np.uint8((ip[IP_CHANNEL_OFFSET] + rout) & 0xFF),
                 mt, dtime, out_t, out_c, out_ns, out_dt)
            n += 1
        state[ST_EVENTS] += 1
    elif (rec >> 28) & 1:                       # marker record: ROUT holds the marker bits
        n = _markers(n, rout, _rel_time(mt, 0, ip, fp), mt, ip, state, out_t, out_c, out_ns, out_dt)
    return n


@kernel
def _eta_events(n, rec, eta_ofl, ip, state, out_t, out_c, out_ns, out_dt):
    """ETA's event for one record (``eta_ofl`` before its MTOV): records with INVALID or MTOV
    give none; raw ADC; ETA's integer units; marker offset when MARK is set."""
    if (rec >> 30) & 3:
        return n
    adc = (rec >> 16) & 0xFFF
    macro = (rec & 0xFFF) + eta_ofl
    rout = (rec >> 12) & 0xF
    mark = (rec >> 28) & 1
    if ip[IP_EMIT]:
        t = macro * ip[IP_TTRES] + adc * ip[IP_DTRES] + ip[IP_TIME_SHIFT]
        off = ip[IP_MARKER_OFFSET] if mark else ip[IP_CHANNEL_OFFSET]
        _put(n, t, np.uint8((off + rout) & 0xFF), macro, adc, out_t, out_c, out_ns, out_dt)
        n += 1
    state[ST_EVENTS] += 1
    if mark:
        state[ST_MARKERS] += 1
    return n


@kernel
def decode_spc(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt):
    """SPC-1xx/8xx records; see the module docstring. T3 extras: macro ticks and dtime."""
    recs = buf.view(np.uint32)
    emit = ip[IP_EMIT] != 0
    eta = ip[IP_ETA] != 0
    cap = out_t.shape[0] - MAX_EVENTS_PER_RECORD
    ofl = state[ST_OVERFLOW]
    eta_ofl = state[ST_ETA_OVERFLOW]
    n = 0
    i = start
    while i < stop and (n <= cap or not emit):
        rec = np.int64(recs[i])
        eta_before = eta_ofl                    # ETA computes the time before adding the wrap
        ofl, eta_ofl = _account(rec, state, ofl, eta_ofl)
        if eta:
            n = _eta_events(n, rec, eta_before, ip, state, out_t, out_c, out_ns, out_dt)
        else:
            n = _exact_events(n, rec, ofl, ip, fp, state, out_t, out_c, out_ns, out_dt)
        i += 1
    state[ST_OVERFLOW] = ofl
    state[ST_ETA_OVERFLOW] = eta_ofl
    state[ST_RECORD] += i - start
    return i, n


# --- header and .set file -----------------------------------------------------------------------

def _check_header_word(word: int, filename) -> None:
    if not word >> 31:
        raise FormatError(f"header word 0x{word:08X} has bit 31 clear; every B&H SPC FIFO file "
                          "starts with a word whose bit 31 is set (wrong format, or not the start "
                          "of an .spc file)", filename, 0)
    if word & 0xFFFFFF == 0:
        raise FormatError(f"header word 0x{word:08X} gives a macrotime clock of 0 (bits 23-0, "
                          "units of 0.1 ns): the header is corrupt", filename, 0)


def find_set_file(filename) -> str | None:
    """The ``.set`` file beside an ``.spc`` file (same stem, any case of the extension)."""
    if not filename or filename.startswith("<"):
        return None
    stem = os.path.splitext(os.fspath(filename))[0]
    for ext in (".set", ".SET", ".Set"):
        if os.path.isfile(stem + ext):
            return stem + ext
    return None


def _param_value(typ: str, text: str):
    text = text.strip()
    try:
        if typ in "IUL":
            return int(text)
        if typ == "F":
            return float(text)
        if typ == "B":
            return text not in ("0", "")
    except ValueError:
        pass
    return text              # S (string), C (character) and anything unknown stay text


def _section(data: bytes, offset: int, name: bytes) -> bytes:
    """The ASCII section ``name ... *END``: at ``offset`` when the binary header is right,
    otherwise found by search (some writers get the offsets wrong)."""
    start = offset if 0 < offset < len(data) and data.startswith(name, offset) else data.find(name)
    if start < 0:
        return b""
    end = data.find(b"*END", start)
    return data[start: len(data) if end < 0 else end]


_IDENT_KEY = re.compile(r"^  (\w[^:]*?)\s*:(.*)$")


def _identification(text: bytes) -> dict:
    """``  Key : value`` lines; a line without that shape continues the previous value."""
    out: dict = {}
    key = None
    for raw in text.decode("latin-1").splitlines()[1:]:
        m = _IDENT_KEY.match(raw)
        if m:
            key = m.group(1)
            out[key] = m.group(2).strip(" \x04")
        elif key is not None and raw.strip():
            out[key] = (out[key] + " " + raw.strip(" \x04")).strip()
    return out


def _setup_params(text: bytes) -> dict:
    params: dict = {}
    inside = False
    for raw in text.decode("latin-1").splitlines():
        line = raw.strip()
        if line == "SYS_PARA_BEGIN:":
            inside = True
        elif line == "SYS_PARA_END:":
            break
        elif inside:
            m = _PARAM.match(line)
            if m:
                params[m.group(2)] = _param_value(m.group(3), m.group(4))
    return params


def read_set_file(path) -> dict:
    """Parse a B&H ``.set`` file: revision, card, identification and setup parameters."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < SET_HEADER.size:
        raise FormatError(f".set file holds {len(data)} bytes, less than its "
                          f"{SET_HEADER.size}-byte binary header", path, 0)
    head = dict(zip(SET_FIELDS, SET_HEADER.unpack_from(data)))
    words = np.frombuffer(data[: SET_HEADER.size], "<u2")
    ident = _identification(_section(data, head["info_offs"], b"*IDENTIFICATION"))
    setup_text = _section(data, head["setup_offs"], b"*SETUP")
    if not setup_text:
        raise FormatError(".set file has no *SETUP section", path, SET_HEADER.size)
    revision = head["revision"]
    code = (revision & 0x0FF0) >> 4
    return {
        "set_file": path,
        "set_revision": revision,
        "set_header_valid": head["header_valid"] == SET_HEADER_VALID,
        "set_checksum_ok": int(words.sum()) & 0xFFFF == SET_CHECKSUM,
        "card_code": code,
        "card": CARDS.get(code, f"unknown card code 0x{code:02X}"),
        "identification": ident,
        "setup": _setup_params(setup_text),
    }


def _dtime_unit_ps(setup: dict) -> float | None:
    """Microtime bin width in ps, TAC range / (TAC gain x ADC resolution), or None."""
    tac_r, gain, adc = (setup.get(k) for k in ("SP_TAC_R", "SP_TAC_G", "SP_ADC_RE"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
               for v in (tac_r, gain, adc)):
        return None
    return float(tac_r) * 1e12 / (float(gain) * float(adc))


def _warn(info: SourceInfo, filename, msg: str) -> None:
    warnings.warn(f"{filename}: {msg}", FormatWarning, stacklevel=4)
    info.warnings.append(msg)


def read_spc_header(f, filename: str, file_size: int) -> SourceInfo:
    """Read the .spc header word and, when present, the .set file beside it."""
    f.seek(0)
    head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        raise FormatError(f"file holds {len(head)} bytes; a B&H .spc file starts with a "
                          f"{HEADER_BYTES}-byte header word", filename, 0)
    (word,) = struct.unpack("<I", head)
    _check_header_word(word, filename)
    clock = word & 0xFFFFFF
    hdr = {"header_word": word, "macro_clock_0.1ns": clock, "macro_clock_ps": clock * 100.0,
           "raw_data": bool(word >> 26 & 1), "markers_enabled": bool(word >> 25 & 1),
           "routing_bits_field": word >> 27 & 0xF}
    info = SourceInfo(
        format=FORMAT_BH_spc_4bytes, format_name=FORMAT_NAME, kernel=decode_spc, record_size=4,
        data_offset=HEADER_BYTES, record_type=FORMAT_BH_spc_4bytes, mode="T3",
        device="SPC-1xx/8xx", time_unit_ps=clock * 100.0, dtime_unit_ps=0.0,
        # ETA reads the first uint16 of the file as the sync period in ps (really 0.1 ns units)
        eta_time_unit_ps=word & 0xFFFF, eta_dtime_unit_ps=1,
        filename=filename, header=hdr, tags=[Tag("header_word", -1, "uint32", word, 0)])
    set_path = find_set_file(filename)
    if set_path is None:
        _warn(info, filename, "no .set file beside this .spc file, so the microtime bin width is "
              "unknown: event times are macrotimes only (dtime unit 0); the dtimes are still "
              "available with t3=True")
        if hdr["routing_bits_field"]:
            _warn(info, filename, f"header word 0x{word:08X} has bits 30-27 set, as SPC-QC "
                  "cards write; without a .set file the records are read as SPC-1xx/8xx")
        return info
    try:
        setup = read_set_file(set_path)
    except FormatError as e:
        # The records do not depend on it: read them, and say what is missing.
        _warn(info, filename, f"cannot read {set_path} ({e.problem}), so the microtime bin "
              "width is unknown: event times are macrotimes only (dtime unit 0)")
        return info
    _apply_set_file(info, setup, filename)
    return info


def _apply_set_file(info: SourceInfo, s: dict, filename) -> None:
    code, path = s["card_code"], s["set_file"]
    if code in OTHER_LAYOUTS:
        raise FormatError(f"the .set file names a {s['card']} card, which writes "
                          f"{OTHER_LAYOUTS[code]}; only the SPC-1xx/8xx 32-bit layout is "
                          "supported", path, 0)
    if code not in CARDS:
        _warn(info, filename, f"{s['card']} in {path}; reading the records as SPC-1xx/8xx")
    info.device = s["card"]
    setup = s["setup"]
    info.header.update({k: v for k, v in s.items() if k != "setup"})
    info.header.update(setup)
    info.tags += [Tag(k, -1, type(v).__name__, v) for k, v in setup.items()]
    unit = _dtime_unit_ps(setup)
    if unit is None:
        _warn(info, filename, f"{path} lacks a usable SP_TAC_R, SP_TAC_G or SP_ADC_RE, so the "
              "microtime bin width is unknown: event times are macrotimes only (dtime unit 0)")
        return
    if setup["SP_ADC_RE"] != ADC_CHANNELS:
        # Not verified on a real file: are the 12-bit ADC values then coarser bins?
        _warn(info, filename, f"SP_ADC_RE is {setup['SP_ADC_RE']}, not 4096: the microtime bin "
              f"is taken as TAC range / (gain x {setup['SP_ADC_RE']}) = {unit:g} ps (unverified)")
    info.dtime_unit_ps = unit
    info.header["dtime_unit_ps"] = unit


def _headerless(record_type: int, ttres: int, dtres: int, syncrate: int) -> SourceInfo:
    """A hand-built Clip with RecordType 5: ETA's fields give the units (SYNCRate_pspr = the macro
    clock in ps, DTRes_pspr = the microtime bin in ps)."""
    unit = syncrate if syncrate > 0 else ttres
    if unit <= 0:
        raise FormatError("a hand-built B&H Clip needs SYNCRate_pspr > 0 (the macro clock in ps)")
    return SourceInfo(format=FORMAT_BH_spc_4bytes, format_name=FORMAT_NAME + " (headerless)",
                      kernel=decode_spc, record_size=4, data_offset=0,
                      record_type=FORMAT_BH_spc_4bytes, mode="T3", device="SPC-1xx/8xx",
                      time_unit_ps=float(unit), dtime_unit_ps=float(max(dtres, 0)),
                      eta_time_unit_ps=int(unit), eta_dtime_unit_ps=int(dtres))


def _sniff(head: bytes, filename: str) -> bool:
    """A .spc name and a plausible header word: the header has no magic of its own."""
    if not str(filename).lower().endswith(".spc") or len(head) < HEADER_BYTES:
        return False
    (word,) = struct.unpack_from("<I", head)
    return bool(word >> 31) and word & 0xFFFFFF != 0


# --- writer -------------------------------------------------------------------------------------

def spc_header_word(clock_ps: float, *, markers_enabled: bool = False, raw: bool = False) -> int:
    """The .spc header word for a macrotime clock of ``clock_ps`` (a multiple of 100 ps)."""
    units = clock_ps / 100.0
    if units != round(units) or not 0 < units < 1 << 24:
        raise ValueError(f"clock_ps {clock_ps} is not a positive multiple of 100 ps below 1.68 ms "
                         "(the header stores it in units of 0.1 ns, 24 bits)")
    return (1 << 31) | (int(raw) << 26) | (int(markers_enabled) << 25) | int(round(units))


def _mask(values, n, name):
    if values is None:
        return np.zeros(n, bool)
    values = np.asarray(values, bool)
    if values.shape != (n,):
        raise ValueError(f"{name} must have one entry per event ({n})")
    return values


def encode_spc(macrotime, dtime, rout, *, markers=None, gaps=None, invalid=None,
               raw_adc: bool = False, mtov_after_multi: bool = False) -> np.ndarray:
    """Records (uint32, no header) for events at absolute ``macrotime`` ticks (non-decreasing).

    ``dtime`` is the microtime (written inverted, ADC = 4095 - dtime) or, with ``raw_adc``, the
    ADC value itself. ``markers``: events written as marker records, ``rout`` then holding the
    marker bits; ``invalid``: invalid-photon records; ``gaps``: records with the GAP flag.
    Wraps of the 12-bit macrotime before an event are written as a single MTOV flag on it when
    there is exactly one, else as a multiple-overflow record (split above 2**28 - 1). With
    ``mtov_after_multi`` a run of k > 1 wraps is written as SPC-150 hardware does: a record
    counting k - 1, then the MTOV flag on the event. Invalid photons never carry MTOV.
    """
    mt = np.ascontiguousarray(macrotime, np.int64)
    n = len(mt)
    dt = np.ascontiguousarray(dtime, np.int64)
    ro = np.ascontiguousarray(rout, np.int64)
    mk, gp, inv = _mask(markers, n, "markers"), _mask(gaps, n, "gaps"), _mask(invalid, n, "invalid")
    if dt.shape != (n,) or ro.shape != (n,):
        raise ValueError("macrotime, dtime and rout must have the same length")
    if n and (mt[0] < 0 or np.any(np.diff(mt) < 0)):
        raise ValueError("macrotimes must be non-negative and non-decreasing")
    if np.any((dt < 0) | (dt > ADC_MAX)) or np.any((ro < 0) | (ro > 15)):
        raise ValueError("dtime must be in 0..4095 and rout in 0..15")
    if np.any(mk & inv):
        raise ValueError("an event cannot be both a marker and an invalid photon")
    wraps = np.diff(mt // MT_WRAP, prepend=0)
    flag = (wraps == 1) & ~inv
    if mtov_after_multi:
        flag = (wraps >= 1) & ~inv
    counts = wraps - flag                               # left for multiple-overflow records
    per_event = -(-counts // MAX_OVERFLOW_COUNT)        # ceil: records needed before each event
    ev_pos = np.cumsum(per_event + 1) - 1
    out = np.zeros(int(ev_pos[-1]) + 1 if n else 0, np.uint32)
    # multiple-overflow records: full ones first, the remainder last
    owner = np.repeat(np.arange(n), per_event)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(per_event) - per_event, per_event)
    last = rank == per_event[owner] - 1
    cnt = np.where(last, counts[owner] - MAX_OVERFLOW_COUNT * rank, MAX_OVERFLOW_COUNT)
    out[ev_pos[owner] - per_event[owner] + rank] = INVALID | MTOV | cnt.astype(np.uint32)
    adc = np.where(raw_adc, dt, ADC_MAX - dt)
    adc[mk] = 0
    rec = ((mt & 0xFFF) | (ro << 12) | (adc << 16)).astype(np.uint32)
    rec |= np.where(mk | inv, INVALID, 0).astype(np.uint32)
    rec |= np.where(mk, MARK, 0).astype(np.uint32)
    rec |= np.where(flag, MTOV, 0).astype(np.uint32)
    rec |= np.where(gp, GAP, 0).astype(np.uint32)
    out[ev_pos] = rec
    return out


def set_file_bytes(*, card: int = 0x28, tac_range_s: float = 50e-9, tac_gain: int = 1,
                   adc_resolution: int = 4096, title: str = "etaflow", extra=()) -> bytes:
    """A minimal .set file: binary header, identification and setup with the TAC parameters.
    ``extra``: more ``(name, type letter, value)`` setup parameters."""
    ident = (f"*IDENTIFICATION\r\n  ID        : SPC Setup Script File\r\n  Title     : {title}\r\n"
             f"  Revision  : 12 bits ADC\r\n  Contents  : written by etaflow for module "
             f"{CARDS.get(card, 'SPC')}\r\n*END\r\n\r\n").encode("latin-1")
    params = [("SP_TAC_R", "F", repr(float(tac_range_s))), ("SP_TAC_G", "I", int(tac_gain)),
              ("SP_ADC_RE", "I", int(adc_resolution)), *extra]
    setup = ("*SETUP\r\n  SYS_PARA_BEGIN:\r\n"
             + "".join(f"  #SP [{name},{typ},{value}]\r\n" for name, typ, value in params)
             + "  SYS_PARA_END:\r\n*END\r\n\r\n").encode("latin-1")
    info_offs = SET_HEADER.size
    setup_offs = info_offs + len(ident)
    end = setup_offs + len(setup)
    fields = [card << 4, info_offs, len(ident), setup_offs, len(setup), end, 0, 0, end, 0, 0,
              SET_HEADER_VALID, 0, 0, 0]
    head = SET_HEADER.pack(*fields)
    check = (SET_CHECKSUM - int(np.frombuffer(head, "<u2").sum())) & 0xFFFF
    fields[-1] = check
    return SET_HEADER.pack(*fields) + ident + setup


def write_spc_records(path, records, *, clock_ps: float = 9500.0, header_word: int | None = None,
                      set_file: bool | bytes = True, **set_kw) -> None:
    """Write raw ``records`` behind a header word; ``set_file``: also write ``<stem>.set``
    (True: :func:`set_file_bytes` with ``set_kw``; bytes: those bytes)."""
    path = os.fspath(path)
    word = spc_header_word(clock_ps) if header_word is None else int(header_word)
    with open(path, "wb") as f:
        f.write(struct.pack("<I", word))
        f.write(np.asarray(records, "<u4").tobytes())
    if set_file is not False:
        data = set_file if isinstance(set_file, bytes) else set_file_bytes(**set_kw)
        with open(os.path.splitext(path)[0] + ".set", "wb") as f:
            f.write(data)


def write_spc(path, macrotime, dtime, rout, *, markers=None, gaps=None, invalid=None,
              clock_ps: float = 9500.0, raw_adc: bool = False, mtov_after_multi: bool = False,
              set_file: bool = True, **set_kw) -> np.ndarray:
    """Write events as a .spc file (and a .set file unless ``set_file=False``); returns the
    records written. Arguments as :func:`encode_spc`; ``set_kw`` go to :func:`set_file_bytes`."""
    recs = encode_spc(macrotime, dtime, rout, markers=markers, gaps=gaps, invalid=invalid,
                      raw_adc=raw_adc, mtov_after_multi=mtov_after_multi)
    word = spc_header_word(clock_ps, markers_enabled=markers is not None and bool(np.any(markers)))
    write_spc_records(path, recs, header_word=word, set_file=set_file, **set_kw)
    return recs


ENTRIES = [
    FormatEntry(code=FORMAT_BH_spc_4bytes, name=FORMAT_NAME, open=read_spc_header, sniff=_sniff,
                extensions=(".spc",), priority=-10, headerless=_headerless),
]
