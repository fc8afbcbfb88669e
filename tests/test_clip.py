"""The Clip API and windowing: ETA's documented semantics with its bugs (spec 9.2) fixed."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etaflow as ef
from etaflow.formats import _pq_encode as E
from etaflow.formats.picoquant import PtuRecordType, ptu_header_bytes, write_ptu

from conftest import shared_file


def _file(tmp_path, n=1000, seed=0, name="c.ptu"):
    """HydraHarp V2 T2 file whose i-th event is at a known time (with overflows in between)."""
    rng = np.random.default_rng(seed)
    ticks = np.cumsum(rng.choice([1, 50, 2**25 + 7], size=n)).astype(np.int64)
    chans = rng.integers(1, 3, n)
    recs = E.encode_t2(ticks, chans)
    path = tmp_path / name
    write_ptu(path, recs, PtuRecordType.HydraHarp2T2, 1e-12)
    return path, ticks, chans, recs


def test_clip_fields_from_header(tmp_path):
    path, *_ = _file(tmp_path)
    clip = ef.clip_file(path)
    assert clip.BytesofRecords == 4 and clip.RecordType == 0x01010204
    assert clip.TTRes_pspr == 1 and clip.SYNCRate_pspr == 1
    assert clip.fseekpoint == clip.headeroffset
    assert clip.batch_actualread_length == os.path.getsize(path) - clip.headeroffset
    assert clip.next_RecID_in_batch == 0 and clip.get_pos() == 0
    assert clip.GlobalTimeShift == 0


def test_read_events_negative_leaves_records_unread(tmp_path):
    path, _, _, recs = _file(tmp_path)
    clip = ef.clip_file(path, read_events=-10)
    assert clip.records() == len(recs) - 10
    clip = ef.clip_file(path, read_events=5, seek_event=len(recs) - 3)
    assert clip.records() == 3 and clip.first_record() == len(recs) - 3


def test_seek_event_gives_exact_absolute_times(tmp_path):
    path, ticks, _, recs = _file(tmp_path)
    t_all, _ = ef.read_events(path)
    for seek in (0, 1, 17, len(recs) // 2, len(recs) - 1):
        t, _ = ef.clip_file(path, seek_event=seek).events()
        np.testing.assert_array_equal(t, t_all[len(t_all) - len(t):])


def test_failures_return_false(tmp_path):
    path, _, _, recs = _file(tmp_path)
    assert ef.clip_file(path, seek_event=len(recs) + 5) is False
    assert ef.clip_file(path, seek_event=len(recs)) is False


def test_clips_reuse_and_independent(tmp_path):
    path, ticks, _, recs = _file(tmp_path)
    reused = list(ef.clips(path, read_events=100))
    assert all(c is reused[0] for c in reused)
    indep = list(ef.clips(path, read_events=100, reuse_clips=False))
    assert len({id(c) for c in indep}) == len(indep) == -(-len(recs) // 100)
    t = np.concatenate([c.events()[0] for c in indep])
    np.testing.assert_array_equal(t, ticks)


def test_reused_clip_refills_its_buffer_only_when_nobody_holds_it(tmp_path):
    """clips(reuse_clips=True) refills the window's buffer in place (no page faults for a new
    one) unless something still holds the old buffer: then the held data stays as it was."""
    path, ticks, _, recs = _file(tmp_path)
    gen = ef.clips(path, read_events=100)
    first = next(gen)
    buf0 = first.buffer
    kept = buf0.copy()
    second = next(gen)                  # buf0 is still referenced here: a new buffer
    assert second.buffer is not buf0
    np.testing.assert_array_equal(buf0, kept)
    del buf0, kept
    buf1_id = id(second.buffer)
    third = next(gen)                   # nothing else holds the buffer: refilled in place
    assert id(third.buffer) == buf1_id
    fresh = ef.clip_file(path, read_events=100, seek_event=200)
    np.testing.assert_array_equal(third.events()[0], fresh.events()[0])


def test_keep_indexes(tmp_path):
    path, ticks, _, recs = _file(tmp_path)
    got = [c.first_record() for c in ef.clips(path, read_events=100, keep_indexes=[0, 3, 4])]
    assert got == [0, 300, 400]
    assert list(ef.clips(path, read_events=100, keep_indexes=[])) == []
    with pytest.raises(ValueError):
        list(ef.clips(path, keep_indexes=3))


def test_split_file(tmp_path):
    path, ticks, _, recs = _file(tmp_path)
    windows = [c.records() for c in ef.split_file(path, cuts=4)]
    assert sum(windows) == len(recs) and len(windows) == 4
    t = np.concatenate([c.events()[0] for c in ef.split_file(path, cuts=7, reuse_clips=False)])
    np.testing.assert_array_equal(t, ticks)
    mc = ef.clip_file(path, read_events=1)
    mc.batch_actualread_length = 0
    assert sum(c.records() for c in ef.split_file(path, modify_clip=mc, cuts=3)) == len(recs)


@pytest.mark.parametrize("read_events,threads", [(1, 3), (7, 4), (100, 2), (10_000, 4), (333, 1)])
def test_clips_list_covers_the_file_exactly_once(tmp_path, read_events, threads):
    path, ticks, chans, recs = _file(tmp_path)
    gens = ef.clips_list(path, read_events=read_events, threads=threads)
    assert len(gens) == threads
    parts = [(c.first_record(), c.records(), *c.events()) for g in gens for c in g]
    starts = [p[0] for p in parts]
    assert starts == sorted(starts)
    assert sum(p[1] for p in parts) == len(recs)
    assert all(a[0] + a[1] == b[0] for a, b in zip(parts, parts[1:]))
    np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), ticks)  # exact absolute times


@pytest.mark.parametrize("how", ["reversed", "threads"])
def test_clips_list_parts_in_any_order(tmp_path, how):
    """The parts' start states are scanned on demand: parts taken last first, or all at once
    from threads, still start from the exact state of their first record."""
    import concurrent.futures
    path, ticks, _, recs = _file(tmp_path)
    gens = ef.clips_list(path, read_events=37, threads=5)

    def times(g):
        return [(c.first_record(), c.events()[0]) for c in g]
    if how == "reversed":
        parts = [times(g) for g in reversed(gens)][::-1]
    else:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            parts = list(pool.map(times, reversed(gens)))[::-1]
    windows = [w for part in parts for w in part]
    assert [w[0] for w in windows] == list(range(0, len(recs), 37))
    np.testing.assert_array_equal(np.concatenate([w[1] for w in windows]), ticks)


def test_hand_built_clip_for_headerless_records(tmp_path):
    """Correlation-hydraharp-headerless.eta: records without a header, resolutions by hand."""
    _, ticks, chans, recs = _file(tmp_path)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(recs.tobytes())
    clip = ef.Clip()
    clip.TTRes_pspr, clip.DTRes_pspr, clip.SYNCRate_pspr = 1, 1, 1
    clip.BytesofRecords, clip.RecordType = 4, 0x01010204
    t = np.concatenate([c.events()[0] for c in ef.clips(raw, modify_clip=clip, read_events=64)])
    np.testing.assert_array_equal(t, ticks)
    # the same records handed over as a memory buffer
    mem = ef.Clip()
    mem.TTRes_pspr, mem.BytesofRecords, mem.RecordType = 1, 4, 0x01010204
    mem.buffer, mem.batch_actualread_length = recs.tobytes(), recs.nbytes
    np.testing.assert_array_equal(mem.events()[0], ticks)


def test_global_time_shift_and_offsets(tmp_path):
    path, ticks, chans, _ = _file(tmp_path)
    clip = ef.clip_file(path)
    clip.GlobalTimeShift, clip.CHANNEL_OFFSET = -1000, 10
    t, c = clip.events()
    np.testing.assert_array_equal(t, ticks - 1000)
    np.testing.assert_array_equal(c, chans + 10)


def test_clip_from_memory_buffer(tmp_path):
    path, ticks, _, _ = _file(tmp_path)
    clip = ef.clip_buffer(path.read_bytes())
    np.testing.assert_array_equal(clip.events()[0], ticks)


def test_get_pos_is_absolute(tmp_path):
    path, _, _, recs = _file(tmp_path)
    positions = [c.get_pos() + c.records() for c in ef.clips(path, read_events=300)]
    assert positions == list(range(300, len(recs), 300)) + [len(recs)]


def _grow(path, head, recs, chunks, delay, partial=True):
    """Append records in chunks, sometimes splitting a record across two writes."""
    with open(path, "wb") as f:
        f.write(head)
        f.flush()
        data = recs.tobytes()
        cuts = np.linspace(0, len(data), chunks + 1).astype(int)
        if not partial:
            cuts -= cuts % 4
        for a, b in zip(cuts, cuts[1:]):
            time.sleep(delay)
            f.write(data[a:b])
            f.flush()


def test_growing_file_is_waited_for_and_partial_records_wait(tmp_path):
    _, ticks, chans, recs = _file(tmp_path, n=3000)
    path = tmp_path / "grow.ptu"
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 0)
    path.write_bytes(head)
    writer = threading.Thread(target=_grow, args=(path, head, recs, 25, 0.02))
    writer.start()
    time.sleep(0.01)
    got = []
    with pytest.warns(ef.FormatWarning):
        for clip in ef.clips(path, read_events=len(recs) // 9 + 1, wait_timeout=2.0):
            got.append(clip.events()[0])
    writer.join()
    np.testing.assert_array_equal(np.concatenate(got), ticks)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), read_events=st.integers(1, 400), seed=st.integers(0, 2**16),
       reuse=st.booleans())
def test_property_windows_equal_whole(tmp_path_factory, n, read_events, seed, reuse):
    path, ticks, chans, _ = _file(tmp_path_factory.mktemp("p"), n=n, seed=seed)
    ts, cs = [], []
    for clip in ef.clips(path, read_events=read_events, reuse_clips=reuse):
        t, c = clip.events()
        ts.append(t)
        cs.append(c)
    np.testing.assert_array_equal(np.concatenate(ts), ticks)
    np.testing.assert_array_equal(np.concatenate(cs), chans)


def test_eta_constants():
    assert (ef.FORMAT_PQ, ef.FORMAT_SI_16bytes, ef.FORMAT_QT_COMPRESSED, ef.FORMAT_QT_RAW,
            ef.FORMAT_QT_BINARY, ef.FORMAT_BH_spc_4bytes, ef.FORMAT_ET_A033) == (0, 1, 2, 3, 4, 5, 6)
    assert ef.quTAG_FORMAT_BINARY == 3


def test_real_file_windows_and_clips_list():
    path = shared_file("data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres")
    t_all, c_all = ef.read_events(path)
    t = np.concatenate([c.events()[0] for g in ef.clips_list(path, read_events=50_000, threads=3)
                        for c in g])
    np.testing.assert_array_equal(t, t_all)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 200), read_events=st.integers(1, 100), seed=st.integers(0, 2**16),
       growth=st.lists(st.integers(1, 97), min_size=1, max_size=30))
def test_property_growing_file_decodes_like_the_whole(tmp_path_factory, n, read_events, seed, growth):
    """Bytes arrive in arbitrary pieces (records split across writes); every window decodes only
    whole records and the concatenation equals the finished file."""
    folder = tmp_path_factory.mktemp("g")
    _, ticks, chans, recs = _file(folder, n=n, seed=seed, name="src.ptu")
    data = recs.tobytes()
    path = folder / "grow.ptu"
    path.write_bytes(ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 0))
    pos, k, clip, got = 0, 0, None, []
    while True:
        nxt = clip if clip is not None else None
        with pytest.warns(ef.FormatWarning) if clip is None else _nothing():
            new = ef.clip_file(path, modify_clip=nxt, read_events=read_events)
        if new:
            clip = new
            got.append(clip.events()[0])
            continue
        if pos >= len(data):
            break
        step = growth[k % len(growth)] * 3
        with open(path, "ab") as f:
            f.write(data[pos:pos + step])
        pos += step
        k += 1
    np.testing.assert_array_equal(np.concatenate(got) if got else np.zeros(0, np.int64), ticks)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
