"""Swabian 16-byte dumps. No real sample exists: every file here is written by our own writer
from spec/file-formats.md section 4.1. Loss records are counted, never events; overflow
intervals; illegal types; hand-built Clips; window splits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etaflow as ef
from etaflow.formats import base as B
from etaflow.formats.swabian import (ERROR, MISSED_EVENTS, OVERFLOW_BEGIN, OVERFLOW_END,
                                     loss_records, overflow_intervals, swabian_records,
                                     write_swabian)
from etaflow.info import file_info

from windowing import assert_split_invariant

SI = ef.FORMAT_SI_16bytes

# a recording with an overflow period, missed-event notices after it and one error record
TIMES = [100, 200, OB := 300, 310, OE := 900, 900, 900, 1_000, 1_100, 1_200]
TYPES = [0, 0, OVERFLOW_BEGIN, 0, OVERFLOW_END, MISSED_EVENTS, MISSED_EVENTS, 0, ERROR, 0]
CHANS = [1, -2, 0, 3, 0, 1, 3, 300, 0, 2]
MISSED = [0, 0, 0, 0, 0, 17, 5, 0, 0, 0]


@pytest.fixture
def dump(tmp_path):
    p = tmp_path / "d.dump"
    write_swabian(p, TIMES, CHANS, TYPES, MISSED)
    return p


@pytest.mark.parametrize("mode", ["exact", "eta"])
def test_loss_records_are_counted_not_emitted(dump, mode):
    t, c = ef.read_events(dump, format=SI, mode=mode)
    assert t.tolist() == [100, 200, 310, 1_000, 1_200]
    assert c.tolist() == [1, 254, 3, 300 - 256, 2]           # falling edge -2 and 300 wrap mod 256
    end = ef.clip_file(dump, format=SI).end_state()
    assert end[B.ST_EVENTS] == 5 and end[B.ST_LOSS_RECORDS] == 5 and end[B.ST_MISSED] == 22
    d = file_info(dump, format=SI)
    assert d["data_loss"] == {"loss_records": 5, "missed_events": 22}
    assert d["events"] == 5 and d["records"] == 10


def test_channel_offset_and_time_shift(dump):
    clip = ef.clip_file(dump, format=SI)
    clip.CHANNEL_OFFSET, clip.GlobalTimeShift = 3, -100
    t, c = ef.decode_clip(clip)
    assert t.tolist() == [0, 100, 210, 900, 1_100] and c.tolist() == [4, 1, 6, 47, 5]


def test_loss_records_and_overflow_intervals(dump):
    loss = loss_records(dump)
    assert loss["index"].tolist() == [2, 4, 5, 6, 8]
    assert loss["missed"].tolist() == [0, 0, 17, 5, 0]
    assert loss["channel"][1:4].tolist() == [0, 1, 3]
    assert overflow_intervals(dump).tolist() == [[OB, OE]]
    assert overflow_intervals(dump, time_shift=5).tolist() == [[OB + 5, OE + 5]]
    # the same from a memory buffer
    buf = swabian_records(TIMES, CHANS, TYPES, MISSED).tobytes()
    assert overflow_intervals(buf).tolist() == [[OB, OE]]


def test_overflow_intervals_open_at_either_end():
    # starts mid-overflow (End first), a repeated Begin, and a period still open at the end
    times = [5, 10, 20, 30, 40, 50, 60, 70]
    types = [0, OVERFLOW_END, 0, OVERFLOW_BEGIN, OVERFLOW_BEGIN, OVERFLOW_END, OVERFLOW_BEGIN, 0]
    buf = swabian_records(times, 1, types).tobytes()
    assert overflow_intervals(buf).tolist() == [[5, 10], [30, 50], [60, 70]]
    assert overflow_intervals(b"").shape == (0, 2)


def test_illegal_type_names_file_and_byte_offset(tmp_path):
    types = [0] * 20
    types[13] = 7
    p = tmp_path / "bad.dump"
    write_swabian(p, np.arange(20), 1, types)
    with pytest.raises(ef.FormatError) as e:
        ef.read_events(p, format=SI)
    assert e.value.filename == str(p) and e.value.offset == 13 * 16
    assert "#13" in str(e.value) and str(p) in str(e.value)
    # also when the bad record sits in a later window
    with pytest.raises(ef.FormatError) as e:
        for clip in ef.clips(p, read_events=6, format=SI):
            ef.decode_clip(clip)
    assert e.value.offset == 13 * 16
    with pytest.raises(ef.FormatError) as e:
        ef.decode_clip(ef.clip_buffer(p.read_bytes(), format=SI, header=False))
    assert e.value.offset == 13 * 16 and e.value.filename == "<buffer>"
    with pytest.raises(ef.FormatError):
        overflow_intervals(p)


def test_headerless_needs_format_and_partial_record_waits(tmp_path):
    p = tmp_path / "p.dump"
    write_swabian(p, [1, 2, 3], [1, 2, 3])
    with pytest.raises(ef.FormatError, match="unidentified"):
        ef.read_events(p)
    with open(p, "ab") as f:
        f.write(bytes(9))                         # 9 bytes of a fourth record
    assert ef.read_events(p, format=SI)[0].tolist() == [1, 2, 3]
    d = file_info(p, format=SI)
    assert d["records"] == 3 and d["data_loss"]["partial_trailing_record_bytes"] == 9


def test_hand_built_clip_and_clip_buffer():
    body = swabian_records([7, 8, 9], [-1, 4, 2], [0, 4, 0], [0, 3, 0]).tobytes()
    c = ef.clip_buffer(body, format=SI, header=False)
    assert c.RecordType == SI and c.BytesofRecords == 16
    t, ch = ef.decode_clip(c)
    assert t.tolist() == [7, 9] and ch.tolist() == [255, 2]
    hand = ef.Clip()
    hand.RecordType, hand.BytesofRecords = SI, 16
    hand.buffer, hand.batch_actualread_length = body, len(body)
    hand.CHANNEL_OFFSET = 1
    t, ch = ef.decode_clip(hand)
    assert t.tolist() == [7, 9] and ch.tolist() == [0, 3]
    assert hand.end_state()[B.ST_MISSED] == 3


def test_writer_validates_fields(tmp_path):
    with pytest.raises(ValueError, match="missed"):
        write_swabian(tmp_path / "x", [1], [1], [MISSED_EVENTS], [70_000])
    with pytest.raises(ValueError, match="channel"):
        write_swabian(tmp_path / "x", [1], [2**31])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_window_split(tmp_path_factory, data):
    n = data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t = np.cumsum(rng.integers(-1_000, 10**9, n))
    types = np.where(rng.random(n) < 0.25, rng.integers(1, 5, n), 0)
    ch = rng.integers(-2**31, 2**31, n) if data.draw(st.booleans()) else rng.integers(-8, 9, n)
    missed = np.where(types == MISSED_EVENTS, rng.integers(0, 2**16, n), 0)
    p = tmp_path_factory.mktemp("s") / "s.dump"
    write_swabian(p, t, ch, types, missed)
    ev = types == 0
    got_t, got_c = ef.read_events(p, format=SI)
    np.testing.assert_array_equal(got_t, t[ev])
    np.testing.assert_array_equal(got_c, ch[ev] % 256)
    end = ef.clip_file(p, format=SI).end_state()
    assert end[B.ST_LOSS_RECORDS] == (~ev).sum() and end[B.ST_MISSED] == missed.sum()
    read_events = data.draw(st.integers(1, n + 2))
    assert_split_invariant(p, read_events, format=SI,
                           mode=data.draw(st.sampled_from(["exact", "eta"])))
