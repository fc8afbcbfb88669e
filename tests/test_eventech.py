"""Eventech ET A033 (ETA-compatible, unverified: no sample or independent spec exists; every file
here is written by our own writer from spec/file-formats.md section 6)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etaflow as ef
from etaflow.formats import base as B
from etaflow.formats.eventech import COARSE_PS, RECORD_DTYPE, eventech_records, write_eventech
from etaflow.info import file_info

from windowing import assert_split_invariant

ET = ef.FORMAT_ET_A033


def _raw(rows):
    return np.array(rows, dtype=np.int32)


@pytest.mark.parametrize("mode", ["exact", "eta"])
def test_decoding_rules_and_skipped_records(tmp_path, mode):
    rows = [(-3, 5), (3, 5), (0, 7), (5, 0), (-5, -1), (-(2**31), 1), (2**31 - 1, 2**31 - 1)]
    p = tmp_path / "e.et"
    write_eventech(p, records=_raw(rows))
    t, c = ef.read_events(p, format=ET, mode=mode)
    assert t.tolist() == [3 * COARSE_PS + 5, 3 * COARSE_PS + 5, 7, 2**31 * COARSE_PS + 1,
                          (2**31 - 1) * COARSE_PS + 2**31 - 1]
    assert c.tolist() == [0, 1, 1, 0, 1]                 # d0 < 0: input A; d0 >= 0: input B
    end = ef.clip_file(p, format=ET).end_state()
    assert end[B.ST_EVENTS] == 5 and end[B.ST_SKIPPED] == 2
    assert file_info(p, format=ET)["channels"] == {"0": 2, "1": 3}


def test_round_trip_with_skipped_records_offset_and_shift(tmp_path):
    t = np.array([COARSE_PS + 1, 5, COARSE_PS, 2 * COARSE_PS, 10**15, 10**15 + 3])
    ch = np.array([0, 1, 1, 0, 1, 0])
    recs = eventech_records(t, ch)
    assert np.all(recs["d1"] > 0)                        # exact multiples too
    recs = np.insert(recs, [1, 3, 3], np.array([(9, 0), (-9, -4), (0, 0)], RECORD_DTYPE))
    p = tmp_path / "r.et"
    write_eventech(p, records=recs)
    clip = ef.clip_file(p, format=ET)
    clip.CHANNEL_OFFSET, clip.GlobalTimeShift = 255, 1
    got_t, got_c = ef.decode_clip(clip)
    np.testing.assert_array_equal(got_t, t + 1)
    np.testing.assert_array_equal(got_c, (ch + 255) % 256)
    assert clip.end_state()[B.ST_SKIPPED] == 3


def test_writer_rejects_unencodable_events(tmp_path):
    for times, chans in (([COARSE_PS], [0]), ([0], [1]), ([2**31 * COARSE_PS + 1], [1]),
                         ([5], [2])):
        with pytest.raises(ValueError):
            write_eventech(tmp_path / "x", times, chans)


def test_headerless_buffers_hand_built_clips_and_partial_records(tmp_path):
    body = eventech_records([10, COARSE_PS + 10], [1, 0]).tobytes()
    t, c = ef.decode_clip(ef.clip_buffer(body + b"\x01\x02\x03", format=ET, header=False))
    assert t.tolist() == [10, COARSE_PS + 10] and c.tolist() == [1, 0]
    hand = ef.Clip()
    hand.RecordType, hand.BytesofRecords = ET, 8
    hand.buffer, hand.batch_actualread_length = body, len(body)
    assert ef.decode_clip(hand)[1].tolist() == [1, 0]
    p = tmp_path / "p.et"
    p.write_bytes(body + b"\x07" * 5)
    with pytest.raises(ef.FormatError, match="unidentified"):
        ef.read_events(p)
    assert ef.read_events(p, format=ET)[0].tolist() == [10, COARSE_PS + 10]
    assert file_info(p, format=ET)["data_loss"]["partial_trailing_record_bytes"] == 5


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_window_split(tmp_path_factory, data):
    n = data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    d0 = rng.integers(-2**31, 2**31, n)
    d1 = np.where(rng.random(n) < 0.3, rng.integers(-2**31, 1, n), rng.integers(1, 2**31, n))
    p = tmp_path_factory.mktemp("e") / "e.et"
    write_eventech(p, records=np.stack([d0, d1], axis=1).astype(np.int32))
    ev = d1 > 0
    got_t, got_c = ef.read_events(p, format=ET)
    np.testing.assert_array_equal(got_t, np.abs(d0[ev]) * COARSE_PS + d1[ev])
    np.testing.assert_array_equal(got_c, (d0[ev] >= 0).astype(np.uint8))
    assert ef.clip_file(p, format=ET).end_state()[B.ST_SKIPPED] == (~ev).sum()
    read_events = data.draw(st.integers(1, n + 2))
    assert_split_invariant(p, read_events, format=ET,
                           mode=data.draw(st.sampled_from(["exact", "eta"])))
