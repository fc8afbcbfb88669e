"""What every format module shares: the SourceInfo record, the decoder-state layout and the
parameter vectors handed to the numba decode kernels.

A decode kernel has one signature for every format, so the orchestrator (clip.py) dispatches on
the format once, outside the hot loop::

    next_rec, n_out = kernel(buf, start, stop, state, ip, fp, out_t, out_c, out_ns, out_dt)

* ``buf``      uint8 array holding whole records, record 0 at byte 0;
* ``start, stop``  record indices to decode ``[start, stop)``;
* ``state``    int64 vector (layout ``ST_*`` below) carried from one window to the next: a file
  cut into any windows decodes to exactly the events of the whole file;
* ``ip, fp``   int64 / float64 parameter vectors (layout ``IP_*``, ``FP_*``);
* ``out_t``    int64 event times in ps; ``out_c`` uint8 channels (ETA numbering);
* ``out_ns, out_dt``  int64 T3 sync index and dtime per event (pass length-0 arrays to skip).

The kernel stops early when fewer than ``MAX_EVENTS_PER_RECORD`` output slots are left, and
returns the index of the next record to decode and the number of events written. With
``ip[IP_EMIT] == 0`` it only advances the state (used to find the state at a window start).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

__all__ = ["SourceInfo", "Tag", "new_state"]

# --- decoder state (int64 vector) --------------------------------------------------------------
ST_OVERFLOW = 0          # accumulated overflow ticks (units of the record's time field)
ST_AUX = 1               # format specific (quTAG compressed: number of 37-bit wraps)
ST_AUX2 = 2              # format specific (quTAG compressed: last raw time)
ST_RECORD = 3            # absolute index (after the header) of the next record to decode
ST_EVENTS = 4            # events emitted so far (markers included)
ST_MARKERS = 5           # marker events emitted
ST_OVERFLOWS = 6         # overflow records seen
ST_SKIPPED = 7           # records that carry no event and signal no loss (e.g. B&H invalid photon)
ST_LOSS_RECORDS = 8      # records that signal lost data (B&H GAP, Swabian overflow/missed/error)
ST_MISSED = 9            # events the device says it lost (Swabian missed-events counts)
ST_BAD = 10              # records that are not legal for the format
ST_FIRST_BAD = 11        # absolute record index of the first illegal record, -1 if none
ST_FIRST_BAD_VALUE = 12  # the raw value of that record (low 64 bits)
STATE_SIZE = 16

# --- integer parameters --------------------------------------------------------------------------
IP_CHANNEL_OFFSET = 0    # added to signal channel numbers (RFILE signal_channels[0])
IP_MARKER_OFFSET = 1     # added to marker numbers (RFILE marker_channels[0])
IP_ETA = 2               # 1: reproduce ETA 0.9.9's decoding quirks
IP_TIME_SHIFT = 3        # ps added to every event (Clip.GlobalTimeShift)
IP_VARIANT = 4           # format variant (PicoQuant: hardware version, 1 = HydraHarp V1 rules)
IP_TTRES = 5             # integer time unit in ps (T2 tick or T3 sync period), when IP_INTTIME
IP_DTRES = 6             # integer dtime unit in ps, when IP_INTTIME
IP_INTTIME = 7           # 1: units are whole picoseconds, use integer arithmetic
IP_EMIT = 8              # 0: advance the state only, write no events
IP_SIZE = 12

# --- float parameters ----------------------------------------------------------------------------
FP_TTRES = 0             # exact time unit in ps (T2 tick or T3 sync period)
FP_DTRES = 1             # exact dtime unit in ps
FP_SIZE = 4

MAX_EVENTS_PER_RECORD = 16


def new_state() -> np.ndarray:
    """A fresh decoder state for the first record of a file."""
    state = np.zeros(STATE_SIZE, dtype=np.int64)
    state[ST_FIRST_BAD] = -1
    return state


@dataclasses.dataclass
class Tag:
    """One header entry: name, array index (-1 for scalars), type name and decoded value."""

    name: str
    index: int
    type: str
    value: Any
    offset: int = -1


@dataclasses.dataclass
class SourceInfo:
    """Everything a header says that is needed to decode and describe the records.

    Resolutions are kept exact (float ps); ``*_pspr`` are ETA's integer-truncated copies.
    """

    format: int                        # FORMAT_* code
    format_name: str                   # e.g. "PicoQuant PTU"
    kernel: Callable                   # numba decode kernel (signature in this module's doc)
    record_size: int                   # bytes per record
    data_offset: int                   # byte offset of record 0
    record_type: int                   # ETA's Clip.RecordType (PicoQuant code or FORMAT_* code)
    mode: str | None = None            # "T2", "T3" or None (no sync/microtime concept)
    device: str = ""
    variant: int = 0                   # kernel variant (see IP_VARIANT)
    time_unit_ps: float = 1.0          # T2: tick; T3: sync period (unit of nsync)
    dtime_unit_ps: float = 1.0         # T3: microtime bin width
    eta_time_unit_ps: int | None = None    # what ETA uses instead of time_unit_ps
    eta_dtime_unit_ps: int | None = None   # what ETA uses instead of dtime_unit_ps
    header_records: int | None = None  # record count claimed by the header, if any
    filename: str | None = None
    tags: list = dataclasses.field(default_factory=list)
    header: dict = dataclasses.field(default_factory=dict)     # name -> value (indexed: name[i])
    data_loss: dict = dataclasses.field(default_factory=dict)  # header-reported loss flags
    warnings: list = dataclasses.field(default_factory=list)
    marker_channels: int = 4           # number of marker bits the format can carry
    # Formats whose markers are ordinary channel numbers (quTAG 100-104, 200-203) list them here,
    # as numbers before the channel offset; bit-mask markers go to the marker offset instead.
    raw_marker_channels: tuple = ()

    # ETA Clip fields --------------------------------------------------------------------------
    @property
    def TTRes_pspr(self) -> int:
        return int(self.eta_time_unit_ps if self.eta_time_unit_ps is not None
                   else int(self.time_unit_ps))

    @property
    def DTRes_pspr(self) -> int:
        return int(self.eta_dtime_unit_ps if self.eta_dtime_unit_ps is not None
                   else int(self.dtime_unit_ps))

    @property
    def SYNCRate_pspr(self) -> int:
        if self.mode == "T3":
            return self.TTRes_pspr
        if self.mode == "T2":
            return 1
        return 0

    @property
    def resolution_ps(self) -> float:
        """Finest time step of an event: the T2 tick or the T3 dtime bin."""
        return self.dtime_unit_ps if self.mode == "T3" else self.time_unit_ps

    @property
    def sync_period_ps(self) -> float | None:
        return self.time_unit_ps if self.mode == "T3" else None

    def params(self, *, eta: bool = False, channel_offset: int = 0, marker_offset: int = 0,
               time_shift: int = 0, emit: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Build the kernel parameter vectors for this source."""
        ip = np.zeros(IP_SIZE, dtype=np.int64)
        fp = np.zeros(FP_SIZE, dtype=np.float64)
        ip[IP_CHANNEL_OFFSET] = channel_offset
        ip[IP_MARKER_OFFSET] = marker_offset
        ip[IP_ETA] = int(eta)
        ip[IP_TIME_SHIFT] = time_shift
        ip[IP_VARIANT] = self.variant
        ip[IP_EMIT] = int(emit)
        if eta:
            ip[IP_TTRES], ip[IP_DTRES], ip[IP_INTTIME] = self.TTRes_pspr, self.DTRes_pspr, 1
        else:
            t, d = float(self.time_unit_ps), float(self.dtime_unit_ps)
            if t == round(t) and d == round(d):
                ip[IP_TTRES], ip[IP_DTRES], ip[IP_INTTIME] = round(t), round(d), 1
        fp[FP_TTRES] = self.time_unit_ps
        fp[FP_DTRES] = self.dtime_unit_ps
        return ip, fp

    def file_records(self, file_size: int) -> int:
        """Whole records present in a file of ``file_size`` bytes."""
        return max(file_size - self.data_offset, 0) // self.record_size
