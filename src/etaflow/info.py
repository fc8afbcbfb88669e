"""Summaries of time-tag files: what ``etaflow info`` prints."""

from __future__ import annotations

import os
import warnings

import numpy as np

from .clip import clips, iter_events
from .formats import base as B
from .formats.registry import open_source

__all__ = ["file_info"]

# Bit-mask markers are decoded to channels from here on, so they never mix with signal channels.
INFO_MARKER_OFFSET = 240
WINDOW_RECORDS = 1 << 22


def file_info(filename, format: int = -1) -> dict:
    """Decode the whole file once (bounded memory) and describe it.

    Channel counts use ETA's channel numbers with default RFILE offsets; markers are counted
    apart (``markers``), per marker bit in ``marker_channels``.
    """
    filename = os.fspath(filename)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = open_source(filename, format)
        counts = np.zeros(256, np.int64)
        first = last = tmin = tmax = None
        end_state = B.new_state()
        records = 0
        for clip in clips(filename, read_events=WINDOW_RECORDS, format=info.format):
            records += clip.records()
            for t, c in iter_events(clip, "exact", channel_offset=0,
                                    marker_offset=INFO_MARKER_OFFSET):
                counts += np.bincount(c, minlength=256)
                first = int(t[0]) if first is None else first
                last = int(t[-1])
                lo, hi = int(t.min()), int(t.max())
                tmin = lo if tmin is None else min(tmin, lo)
                tmax = hi if tmax is None else max(tmax, hi)
            end_state = clip.end_state()
    marker_mask = np.zeros(256, bool)
    if info.marker_channels > 0:       # formats with bit-mask markers decode them up there
        marker_mask[INFO_MARKER_OFFSET:] = True
    for ch in info.raw_marker_channels:
        marker_mask[ch & 0xFF] = True
    channels = {str(ch): int(n) for ch, n in enumerate(counts) if n and not marker_mask[ch]}
    marker_channels = {str(ch - INFO_MARKER_OFFSET if ch >= INFO_MARKER_OFFSET else ch): int(n)
                       for ch, n in enumerate(counts) if n and marker_mask[ch]}
    loss = dict(info.data_loss)
    if end_state[B.ST_LOSS_RECORDS]:
        loss["loss_records"] = int(end_state[B.ST_LOSS_RECORDS])
    if end_state[B.ST_SKIPPED]:
        loss["skipped_records"] = int(end_state[B.ST_SKIPPED])
    if end_state[B.ST_MISSED]:
        loss["missed_events"] = int(end_state[B.ST_MISSED])
    size = os.path.getsize(filename)
    if (size - info.data_offset) % info.record_size:
        loss["partial_trailing_record_bytes"] = (size - info.data_offset) % info.record_size
    return {
        "file": filename,
        "format": info.format_name,
        "format_code": info.format,
        "device": info.device,
        "mode": info.mode,
        "record_type": info.record_type,
        "data_offset": info.data_offset,
        "record_size": info.record_size,
        "records": records,
        "header_records": info.header_records,
        "events": int(end_state[B.ST_EVENTS]),
        "channels": channels,
        "markers": int(end_state[B.ST_MARKERS]),
        "marker_channels": marker_channels,
        "overflow_records": int(end_state[B.ST_OVERFLOWS]),
        "resolution_ps": info.resolution_ps,
        "sync_period_ps": info.sync_period_ps,
        "first_ps": first,
        "last_ps": last,
        "duration_ps": None if tmin is None else tmax - tmin,
        "data_loss": loss,
        "warnings": list(info.warnings) + [str(w.message) for w in caught
                                           if str(w.message) not in " ".join(info.warnings)],
    }
