"""Shared check: any window split of a file decodes to exactly the events of the whole file."""

from __future__ import annotations

import numpy as np

import etaflow as ef


def whole(path, format=-1, mode="exact", **kw):
    clip = ef.clip_file(path, format=format)
    if not clip:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    return ef.decode_clip(clip, mode=mode, **kw)


def windowed(path, read_events, format=-1, mode="exact", reuse_clips=True, **kw):
    ts, cs = [], []
    for clip in ef.clips(path, read_events=read_events, format=format, reuse_clips=reuse_clips):
        t, c = ef.decode_clip(clip, mode=mode, **kw)
        ts.append(t)
        cs.append(c)
    if not ts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    return np.concatenate(ts), np.concatenate(cs)


def assert_split_invariant(path, read_events, format=-1, mode="exact", **kw):
    """Decode ``path`` whole and in windows of ``read_events`` records; assert identical events."""
    t0, c0 = whole(path, format, mode, **kw)
    t1, c1 = windowed(path, read_events, format, mode, **kw)
    np.testing.assert_array_equal(t1, t0)
    np.testing.assert_array_equal(c1, c0)
    # windows decoded out of order (independent Clips) give the same events too
    parts = list(ef.clips(path, read_events=read_events, format=format, reuse_clips=False))
    dec = [ef.decode_clip(c, mode=mode, **kw) for c in reversed(parts)][::-1]
    if dec:
        np.testing.assert_array_equal(np.concatenate([d[0] for d in dec]), t0)
        np.testing.assert_array_equal(np.concatenate([d[1] for d in dec]), c0)
