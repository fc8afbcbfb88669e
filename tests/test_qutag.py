"""quTAG binary, raw and compressed: the real binary sample against independent figures, writer
round trips (no real raw or compressed sample exists: those files come from our own writers),
37-bit unwrapping with disorder, hand-built Clips, window splits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etaflow as ef
from etaflow.formats import base as B
from etaflow.formats.qutag import (MARKER_CHANNELS, compressed_records, qutag_records,
                                   write_qutag_binary, write_qutag_compressed, write_qutag_raw)
from etaflow.info import file_info

from conftest import shared_file
from windowing import assert_split_invariant

SAMPLE = "data/qutag/19_qutag_80MHz_HBT_sync_filtered.qutag"
R = 1 << 37                     # compressed time range (ps)


# --- the real file ------------------------------------------------------------------------------

def test_real_file_matches_reference_figures():
    path = shared_file(SAMPLE)
    info = ef.open_source(path)
    assert (info.format, info.record_type, info.data_offset, info.record_size) == (4, 4, 40, 10)
    assert info.header["file_size"] == path.stat().st_size and not info.warnings
    t, c = ef.read_events(path)
    assert len(t) == 267_801
    assert dict(zip(*np.unique(c, return_counts=True))) == {1: 79_314, 2: 94_287, 5: 94_200}
    back = np.diff(t)[np.diff(t) < 0]
    assert len(back) == 173 and -86_000 < back.min() and back.max() <= -10_000   # 10-86 ns
    assert 2.5e17 < t[0] < 2.7e17                                   # absolute device time, ps
    assert abs((t[-1] - t[0]) - 5.044e12) < 1e9                      # 5.044 s
    d = file_info(path)
    assert d["channels"] == {"1": 79_314, "2": 94_287, "5": 94_200}
    assert d["records"] == d["events"] == 267_801 and d["markers"] == 0


def test_real_file_eta_mode_equals_exact_and_splits():
    path = shared_file(SAMPLE)
    exact = ef.read_events(path)
    eta = ef.read_events(path, mode="eta")
    np.testing.assert_array_equal(eta[0], exact[0])
    np.testing.assert_array_equal(eta[1], exact[1])
    assert_split_invariant(path, 33_333)


# --- binary and raw round trips -----------------------------------------------------------------

def test_binary_round_trip_markers_offsets_and_wrap(tmp_path):
    t = np.array([5, 3, 10, 2**62, -7, 11, 12, 13, 14], np.int64)     # file order kept, any int64
    ch = np.array([1, 104, 0, 5, 200, 300, 203, 99, 77])
    p = tmp_path / "m.qutag"
    write_qutag_binary(p, t, ch)
    assert ef.open_source(p).format == ef.FORMAT_QT_BINARY          # sniffed by magic
    got_t, got_c = ef.read_events(p)
    np.testing.assert_array_equal(got_t, t)
    assert got_c.tolist() == [1, 104, 0, 5, 200, 300 - 256, 203, 99, 77]   # ETA's mod-256 wrap
    _, c10 = ef.read_events(p, channel_offset=10)
    assert c10.tolist() == [(x + 10) % 256 for x in ch]
    clip = ef.clip_file(p)
    end = clip.end_state()
    assert end[B.ST_EVENTS] == 9 and end[B.ST_MARKERS] == 3          # 104, 200, 203
    d = file_info(p)
    assert d["markers"] == 3 and d["marker_channels"] == {"104": 1, "200": 1, "203": 1}
    assert "104" not in d["channels"] and d["channels"]["44"] == 1
    assert set(ef.open_source(p).raw_marker_channels) == set(MARKER_CHANNELS)


def test_raw_round_trip_starts_at_byte_zero(tmp_path):
    t = np.arange(7, dtype=np.int64) * 1000 + 17
    ch = np.array([1, 2, 3, 1, 2, 3, 101])
    p = tmp_path / "r.bin"
    write_qutag_raw(p, t, ch)
    with pytest.raises(ef.FormatError, match="unidentified"):
        ef.read_events(p)                                 # no header: cannot be sniffed
    info = ef.open_source(p, ef.FORMAT_QT_RAW)
    assert (info.format, info.record_type, info.data_offset) == (3, 4, 0)   # ETA: RecordType 4
    got_t, got_c = ef.read_events(p, format=ef.FORMAT_QT_RAW)
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_c, ch)
    assert ef.read_events(p, format=3, mode="eta")[0].tolist() == t.tolist()


def test_partial_trailing_record_is_not_decoded(tmp_path):
    p = tmp_path / "cut.qutag"
    write_qutag_binary(p, [1, 2, 3], [1, 2, 1])
    with open(p, "ab") as f:
        f.write(b"\x01\x02\x03\x04")                     # 4 bytes of a fourth record
    with pytest.warns(ef.FormatWarning, match="trailing data"):
        assert ef.read_events(p)[0].tolist() == [1, 2, 3]
        d = file_info(p)
    assert d["data_loss"]["partial_trailing_record_bytes"] == 4 and d["records"] == 3
    p2 = tmp_path / "cut.cmp"
    write_qutag_compressed(p2, [1, 2, 3], [1, 2, 1])
    with open(p2, "ab") as f:
        f.write(b"\x09\x09")
    assert ef.read_events(p2, format=2)[0].tolist() == [1, 2, 3]


def test_truncated_copy_warns_from_header_size_field(tmp_path):
    p = tmp_path / "t.qutag"
    write_qutag_binary(p, np.arange(10), np.ones(10, int))
    p.write_bytes(p.read_bytes()[:40 + 6 * 10])
    with pytest.warns(ef.FormatWarning, match="truncated"):
        info = ef.open_source(p)
    assert info.data_loss["truncated"] == 4 and info.header_records == 10


def test_file_shorter_than_header_is_a_format_error(tmp_path):
    p = tmp_path / "short.qutag"
    p.write_bytes(b"\x87\xb3\x91\xfa" + bytes(16))
    with pytest.raises(ef.FormatError, match="shorter than the 40-byte") as e:
        ef.open_source(p)
    assert e.value.filename == str(p) and e.value.offset == 20


def test_writer_rejects_channels_out_of_range(tmp_path):
    with pytest.raises(ValueError):
        write_qutag_binary(tmp_path / "x", [1], [70_000])
    with pytest.raises(ValueError):
        write_qutag_compressed(tmp_path / "x", [1], [8])


# --- compressed: 37-bit unwrapping ------------------------------------------------------------

def _wrapping_times():
    """Events around three wraps, with records up to 90 ns late in file order, also across the
    wrap points (a record from before a wrap stored after records from after it)."""
    truth = [10, 5_000, 9_000, 12_000, R // 3, 2 * R // 3, R - 50_000, R - 100, R + 20,
             R + 30_000,
             R - 40_000,                              # late: from before the first wrap
             R + 80_000, R + R // 3, R + 2 * R // 3, 2 * R - 10, 2 * R + 5,
             2 * R - 3_000,                           # late again
             2 * R + 70_000, 2 * R + R // 3, 2 * R + 2 * R // 3, 3 * R - 1, 3 * R + 1,
             3 * R - 2]
    return np.array(truth, np.int64), np.arange(len(truth)) % 8


def test_compressed_unwraps_with_disorder_near_wraps(tmp_path):
    t, ch = _wrapping_times()
    p = tmp_path / "c.qtc"
    write_qutag_compressed(p, t, ch)
    assert ef.open_source(p).format == ef.FORMAT_QT_COMPRESSED    # sniffed: magic, not binary
    got_t, got_c = ef.read_events(p)
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_c, ch)
    end = ef.clip_file(p).end_state()
    assert end[B.ST_AUX] == 3 and end[B.ST_AUX2] == (3 * R + 1) % R
    eta_t, _ = ef.read_events(p, mode="eta")                      # ETA never unwraps
    np.testing.assert_array_equal(eta_t, t % R)
    for n in range(1, len(t) + 1):
        assert_split_invariant(p, n)
        assert_split_invariant(p, n, mode="eta")


def test_compressed_first_record_in_upper_half_is_not_taken_as_late(tmp_path):
    t = np.array([R - 10, R - 5, R + 3, R - 7], np.int64)
    p = tmp_path / "u.qtc"
    write_qutag_compressed(p, t, [1, 2, 3, 4])
    np.testing.assert_array_equal(ef.read_events(p, format=2)[0], t)


def test_compressed_time_shift_and_offset(tmp_path):
    p = tmp_path / "s.qtc"
    write_qutag_compressed(p, [100, 200], [0, 7])
    c = ef.clip_file(p, format=2)
    c.GlobalTimeShift, c.CHANNEL_OFFSET = 1_000, 250
    t, ch = ef.decode_clip(c)
    assert t.tolist() == [1_100, 1_200] and ch.tolist() == [250, 1]


# --- hand-built and headerless Clips ------------------------------------------------------------

@pytest.mark.parametrize("code", [ef.FORMAT_QT_BINARY, ef.FORMAT_QT_RAW, ef.FORMAT_QT_COMPRESSED])
def test_headerless_buffers_and_hand_built_clips(code):
    t = np.array([10, 20, R // 3, 2 * R // 3, R + 5, R - 15], np.int64)
    ch = np.arange(len(t)) % 4 + 1
    body = compressed_records(t, ch) if code == 2 else qutag_records(t, ch).tobytes()
    c = ef.clip_buffer(body, format=code, header=False)
    got = ef.decode_clip(c)
    np.testing.assert_array_equal(got[0], t)
    np.testing.assert_array_equal(got[1], ch)
    hand = ef.Clip()
    hand.RecordType = code
    hand.BytesofRecords = 5 if code == 2 else 10
    hand.buffer = body + b"\x00"                 # a stray byte: not a whole record
    hand.batch_actualread_length = len(body) + 1
    hand.CHANNEL_OFFSET = 100
    got = ef.decode_clip(hand)
    np.testing.assert_array_equal(got[0], t)
    np.testing.assert_array_equal(got[1], ch + 100)
    if code == ef.FORMAT_QT_BINARY:             # a whole file's bytes, header included
        full = ef.clip_buffer(b"\x87\xb3\x91\xfa" + bytes(36) + body)
        np.testing.assert_array_equal(ef.decode_clip(full)[0], t)


# --- window splits --------------------------------------------------------------------------

SETTINGS = dict(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(**SETTINGS)
@given(data=st.data())
def test_binary_and_raw_any_window_split(tmp_path_factory, data):
    n = data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t = np.cumsum(rng.integers(-100_000, 10**9, n))        # steps back too
    ch = rng.choice([0, 1, 2, 5, 104, 200, 1000], n)
    raw = data.draw(st.booleans())
    p = tmp_path_factory.mktemp("q") / "q.bin"
    (write_qutag_raw if raw else write_qutag_binary)(p, t, ch)
    fmt = ef.FORMAT_QT_RAW if raw else -1
    got_t, got_c = ef.read_events(p, format=fmt)
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_c, ch % 256)
    mode = data.draw(st.sampled_from(["exact", "eta"]))
    assert_split_invariant(p, data.draw(st.integers(1, n + 2)), format=fmt, mode=mode)


@settings(**SETTINGS)
@given(data=st.data())
def test_compressed_any_window_split_with_wraps_at_edges(tmp_path_factory, data):
    n = data.draw(st.integers(1, 200))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # gaps from ps to 0.4 of the range (wraps every few records), then up to 100 ns lateness
    gaps = np.where(rng.random(n) < 0.3, rng.integers(0, int(0.4 * R), n),
                    rng.integers(0, 10**5, n))
    truth = np.cumsum(gaps) + 200_000
    # events within 100 ns of each wrap point, so that late records straddle wraps
    k = np.arange(1, truth[-1] // R + 1)
    near = (k * R)[:, None] + rng.integers(-100_000, 100_000, (len(k), 3))
    truth = np.sort(np.concatenate([truth, near.ravel()]))
    n = len(truth)
    t = truth - np.where(rng.random(n) < 0.3, rng.integers(0, 100_000, n), 0)
    t[0] = truth[0]
    ch = rng.integers(0, 8, n)
    p = tmp_path_factory.mktemp("c") / "c.qtc"
    write_qutag_compressed(p, t, ch)
    got_t, got_c = ef.read_events(p, format=2)
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_c, ch)
    # windows that start right at a wrap, right after it, or anywhere
    wraps = [int(w) + d for w in np.flatnonzero(np.diff(t // R) > 0) + 1 for d in (0, 1)]
    choices = st.integers(1, n + 2)
    if wraps:
        choices = st.one_of(choices, st.sampled_from(wraps))
    mode = data.draw(st.sampled_from(["exact", "eta"]))
    assert_split_invariant(p, data.draw(choices), format=2, mode=mode)
