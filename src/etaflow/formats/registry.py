"""The format registry: FORMAT_* codes, magic-byte detection and header readers.

Each vendor module defines ``ENTRIES``, a list of :class:`FormatEntry`. Detection reads the first
bytes once and asks every sniffer (highest priority first); headerless formats (Swabian dump,
quTAG raw, Eventech, B&H without a recognisable header) cannot be recognised and must be named
with ``format=``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Callable

from ..errors import FormatError
from .base import SourceInfo

__all__ = ["FormatEntry", "FORMATS", "open_source", "detect_format", "source_from_fields",
           "FORMAT_PQ", "FORMAT_SI_16bytes", "FORMAT_SI", "FORMAT_QT_COMPRESSED", "FORMAT_QT_RAW",
           "FORMAT_QT_BINARY", "FORMAT_BH_spc_4bytes", "FORMAT_ET_A033", "FORMAT_PQ_LEGACY",
           "quTAG_FORMAT_BINARY", "quTAG_FORMAT_COMPRESSED", "bh_spc_4bytes"]

# ETA's codes (same numeric values as ETA 0.9.9) ---------------------------------------------------
FORMAT_PQ = 0
FORMAT_SI_16bytes = FORMAT_SI = 1
FORMAT_QT_COMPRESSED = quTAG_FORMAT_COMPRESSED = 2
FORMAT_QT_RAW = 3
quTAG_FORMAT_BINARY = 3        # ETA's historical alias: the headerless raw reader, not 4
FORMAT_QT_BINARY = 4
FORMAT_BH_spc_4bytes = bh_spc_4bytes = 5
FORMAT_ET_A033 = 6
# etaflow's own codes ----------------------------------------------------------------------------
FORMAT_PQ_LEGACY = 10          # .pt2 .pt3 .ht2 .ht3 .t3r (ETA has no reader for these)

SNIFF_BYTES = 64


@dataclasses.dataclass
class FormatEntry:
    """One readable format."""

    code: int
    name: str
    open: Callable          # open(f, filename, file_size) -> SourceInfo
    sniff: Callable | None = None   # sniff(head_bytes, filename) -> bool; never raises
    extensions: tuple = ()
    priority: int = 0
    headerless: Callable | None = None  # headerless(record_type, ttres, dtres, syncrate) -> SourceInfo


_VENDOR_MODULES = ("picoquant_entries", "picoquant_legacy", "qutag", "swabian", "becker_hickl",
                   "eventech")
FORMATS: dict[int, FormatEntry] = {}


def _load() -> dict[int, FormatEntry]:
    if not FORMATS:
        for mod in _VENDOR_MODULES:
            try:
                m = importlib.import_module(f"{__package__}.{mod}")
            except ModuleNotFoundError as e:  # a vendor module not written yet
                if e.name != f"{__package__}.{mod}":
                    raise
                continue
            for entry in m.ENTRIES:
                FORMATS[entry.code] = entry
    return FORMATS


def formats() -> dict[int, FormatEntry]:
    """All registered formats by code."""
    return _load()


def _format_list() -> str:
    return ", ".join(f"{e.code} ({e.name})" for e in sorted(_load().values(), key=lambda e: e.code))


def detect_format(head: bytes, filename: str = "") -> int:
    """The FORMAT_* code whose magic matches ``head``; FormatError when none does."""
    entries = sorted((e for e in _load().values() if e.sniff), key=lambda e: -e.priority)
    for e in entries:
        try:
            if e.sniff(head, filename):
                return e.code
        except Exception:  # a sniffer must never break detection
            continue
    raise FormatError(f"unidentified time-tag format (first bytes {head[:8]!r}); headerless "
                      f"formats must be named: pass format= one of {_format_list()}", filename, 0)


def open_source(filename, format: int = -1) -> SourceInfo:
    """Read the header of ``filename`` and describe its records."""
    filename = os.fspath(filename)
    size = os.path.getsize(filename)
    with open(filename, "rb") as f:
        if format is None or format < 0:
            format = detect_format(f.read(SNIFF_BYTES), filename)
        entry = _load().get(int(format))
        if entry is None:
            raise FormatError(f"unknown format code {format}; known: {_format_list()}", filename)
        f.seek(0)
        info = entry.open(f, filename, size)
    info.filename = filename
    return info


def source_from_fields(record_type: int, ttres: int, dtres: int, syncrate: int,
                       record_size: int = 0) -> SourceInfo:
    """Describe a headerless source from ETA Clip fields (a hand-built Clip)."""
    from .picoquant import RECORD_TYPES, PtuRecordType  # PicoQuant codes are ETA's RecordType too
    try:
        rt = PtuRecordType(record_type)
    except ValueError:
        entry = _load().get(record_type)
        if entry is None or entry.headerless is None:
            raise FormatError(f"Clip.RecordType {record_type} is neither a PicoQuant record type "
                              f"nor a headerless format code ({_format_list()})") from None
        return entry.headerless(record_type, ttres, dtres, syncrate)
    device, mode, kern, variant = RECORD_TYPES[rt]
    unit = float(syncrate if mode == "T3" else ttres)
    if unit <= 0:
        raise FormatError(f"hand-built Clip for {rt.name} needs "
                          f"{'SYNCRate_pspr' if mode == 'T3' else 'TTRes_pspr'} > 0")
    return SourceInfo(format=FORMAT_PQ, format_name="PicoQuant (headerless)", kernel=kern,
                      record_size=record_size or 4, data_offset=0, record_type=int(rt), mode=mode,
                      device=device, variant=variant, time_unit_ps=unit,
                      dtime_unit_ps=float(dtres or 1), eta_time_unit_ps=int(unit),
                      eta_dtime_unit_ps=int(dtres or 1))
