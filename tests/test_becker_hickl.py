"""Becker & Hickl SPC: the real SPC-150 file against its .asc export, ETA's four decoding bugs
reproduced in eta mode (checked against numpy over the raw words), writer -> reader round trips,
window splits, and bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etaflow as ef
from etaflow.formats import base as B
from etaflow.formats import becker_hickl as BH
from etaflow.info import file_info

from conftest import shared_file
from windowing import assert_split_invariant

SPC = "data/becker-hickl/phconvert_test_noise.spc"
ASC = "data/becker-hickl/phconvert_test_noise.asc"


# --- independent numpy views of the raw words --------------------------------------------------

def _fields(words):
    r = np.asarray(words, np.int64)
    return dict(inv=r >> 31 & 1, mtov=r >> 30 & 1, gap=r >> 29 & 1, mark=r >> 28 & 1,
                adc=r >> 16 & 0xFFF, rout=r >> 12 & 0xF, mt=r & 0xFFF, cnt=r & 0x0FFFFFFF)


def _eta_reference(words, clock16, coff=0, moff=0, dtres=1):
    """ETA 0.9.9's BH decoding, written from spec/eta-behaviour.md section 1.8."""
    f = _fields(words)
    ofl_before = 4096 * (np.cumsum(f["mtov"]) - f["mtov"])      # +4096 per MTOV bit, count ignored
    keep = (f["inv"] == 0) & (f["mtov"] == 0)
    t = (f["mt"] + ofl_before) * clock16 + f["adc"] * dtres
    c = np.where(f["mark"] == 1, moff, coff) + f["rout"]
    return t[keep], (c[keep] & 0xFF)


def _real_words():
    return np.fromfile(shared_file(SPC), "<u4")


# --- the real file ------------------------------------------------------------------------------

def test_real_file_every_photon_matches_the_asc_export():
    """The .asc holds one photon per line: the macrotime in clock ticks, overflows included,
    then the microtime already inverted (4095 - ADC)."""
    path = shared_file(SPC)
    asc = np.loadtxt(shared_file(ASC), dtype=np.int64)
    info = ef.open_source(path)
    t, c, ns, dt = ef.read_events(path, t3=True)
    assert len(t) == len(asc) == 6114 and set(np.unique(c)) == {0}
    np.testing.assert_array_equal(ns, asc[:, 0])
    np.testing.assert_array_equal(dt, asc[:, 1])
    np.testing.assert_array_equal(
        t, np.round(ns * 9500.0).astype(np.int64)
        + np.round(dt * info.dtime_unit_ps).astype(np.int64))
    # the first photon, by hand: a 10-wrap record, then MT 3094 and ADC 1239
    f = _fields(_real_words()[1:3])
    assert f["cnt"][0] == 10 and (f["mt"][1], f["adc"][1]) == (3094, 1239)
    assert (ns[0], dt[0]) == (10 * 4096 + 3094, 4095 - 1239)


def test_real_file_header_and_counts():
    path = shared_file(SPC)
    info = ef.open_source(path)
    assert (info.format, info.record_size, info.data_offset, info.record_type, info.mode) == \
        (5, 4, 4, 5, "T3")
    assert info.device == "SPC-150" and info.header["card_code"] == 0x28
    assert info.header["header_word"] == 0x8000005F and info.header["macro_clock_0.1ns"] == 95
    assert info.time_unit_ps == 9500.0 and info.sync_period_ps == 9500.0
    assert (info.eta_time_unit_ps, info.eta_dtime_unit_ps) == (95, 1)    # ETA: 95 "ps"
    assert (info.SYNCRate_pspr, info.DTRes_pspr) == (95, 1)
    assert info.header["SP_TAC_R"] == 5.0033574e-08 and info.header["SP_TAC_G"] == 5
    assert info.header["SP_ADC_RE"] == 4096 and info.header["set_checksum_ok"]
    assert info.dtime_unit_ps == pytest.approx(50_033.574 / (5 * 4096), rel=1e-12)
    assert "SPC-150" in info.header["identification"]["Contents"]

    raw = _real_words()
    f = _fields(raw[1:])
    multi = (f["inv"] == 1) & (f["mtov"] == 1) & (f["mark"] == 0)
    assert info.file_records(path.stat().st_size) == len(raw) - 1 == 26_111
    assert multi.sum() == 18_910 and (f["inv"] == 0).sum() == 6114
    clip = ef.clip_file(path)
    st_ = clip.end_state()
    assert st_[B.ST_OVERFLOWS] == 18_910
    assert st_[B.ST_EVENTS] == 6114 and st_[B.ST_MARKERS] == 0
    invalid_photons = (f["inv"] == 1) & (f["mtov"] == 0) & (f["mark"] == 0)
    assert st_[B.ST_SKIPPED] == invalid_photons.sum() == 1087
    assert st_[BH.ST_SINGLE_MTOV] == ((f["inv"] == 0) & (f["mtov"] == 1)).sum() == 2954
    assert st_[B.ST_LOSS_RECORDS] == 0
    assert st_[B.ST_OVERFLOW] == 4096 * (f["cnt"][multi].sum() + 2954)

    d = file_info(path)
    assert d["records"] == 26_111 and d["events"] == 6114 and d["overflow_records"] == 18_910
    assert d["channels"] == {"0": 6114} and "loss_records" not in d["data_loss"]
    assert abs(d["last_ps"] - 16.15e12) < 0.01e12          # 16.15 s
    assert abs(d["duration_ps"] - 16.15e12) < 0.01e12


def test_real_file_eta_mode_reproduces_etas_four_bugs():
    path = shared_file(SPC)
    raw = _real_words()
    f = _fields(raw[1:])
    t, c, ns, dt = ef.read_events(path, mode="eta", t3=True)
    et, ec = _eta_reference(raw[1:], int(raw[0]) & 0xFFFF)
    np.testing.assert_array_equal(t, et)
    np.testing.assert_array_equal(c, ec)

    xt, _, xns, xdt = ef.read_events(path, t3=True)
    photon = f["inv"] == 0
    kept = (f["mtov"] == 0)[photon]              # which exact photons ETA keeps
    # bug 3: every photon whose record carries MTOV vanishes
    assert len(t) == kept.sum() == 6114 - 2954
    # bug 2: ETA's microtime is the raw ADC, the reverse of the real one
    np.testing.assert_array_equal(dt, 4095 - xdt[kept])
    # bug 1: the clock field (0.1 ns units) is taken as ps, so times shrink 100-fold
    np.testing.assert_array_equal(t, ns * 95 + dt)
    # bug 4: a multiple-overflow record counts as one wrap, so ETA's macrotime falls behind the
    # real one by 4096 x (count - 1) for every such record before the photon
    multi = (f["inv"] == 1) & (f["mtov"] == 1) & (f["mark"] == 0)
    lost = 4096 * np.cumsum(np.where(multi, f["cnt"] - 1, 0))
    np.testing.assert_array_equal(xns[kept] - ns, lost[photon][kept])
    assert t[-1] < 0.01e12 < 16e12 < xt[-1]      # ETA's 16 s file ends after 8.5 ms


def test_real_file_split_invariant_in_both_modes():
    for mode in ("exact", "eta"):
        for r in (997, 4096):
            assert_split_invariant(shared_file(SPC), r, mode=mode)


# --- the four bugs on a file written by hand -----------------------------------------------------

def test_eta_bugs_on_a_small_file(tmp_path):
    p = tmp_path / "small.spc"
    # photon at 100; photon at 5000 (one wrap: MTOV flag); photon at 3 x 4096 + 7 (two more
    # wraps: a multiple-overflow record counting 2)
    recs = BH.write_spc(p, [100, 5000, 3 * 4096 + 7], [5, 6, 7], [1, 2, 3],
                        tac_range_s=40.96e-9, tac_gain=1)         # 10 ps bins
    assert recs.tolist() == [0x0FFA_1064, 0x4FF9_2388, 0xC000_0002, 0x0FF8_3007]
    t, c = ef.read_events(p)
    assert t.tolist() == [100 * 9500 + 50, 5000 * 9500 + 60, 12295 * 9500 + 70]
    assert c.tolist() == [1, 2, 3]
    t, c = ef.read_events(p, mode="eta")
    # ETA: 95 ps clock, ADC not inverted, the MTOV photon gone, the 2-wrap record worth one
    assert t.tolist() == [100 * 95 + 4090, (2 * 4096 + 7) * 95 + 4088]
    assert c.tolist() == [1, 3]


def test_markers_exact_every_bit_eta_drops_them(tmp_path):
    p = tmp_path / "m.spc"
    mt = np.array([10, 4096 + 20, 4096 + 20, 9000])
    BH.write_spc(p, mt, [0, 0, 100, 0], [0b0101, 0b0010, 1, 0b1000],
                 markers=[True, True, False, True])
    t, c, ns, dt = ef.read_events(p, t3=True, marker_offset=100)
    assert c.tolist() == [100, 102, 101, 1, 103]
    assert ns.tolist() == [10, 10, 4116, 4116, 9000]
    assert dt.tolist() == [-1, -1, -1, 100, -1]
    bin_ps = 50_000 / 4096                                  # the writer's default TAC setup
    assert t.tolist() == [95_000, 95_000, 4116 * 9500, 4116 * 9500 + round(100 * bin_ps),
                          9000 * 9500]
    # ETA drops every marker record (INVALID is set) and the photon's record carries no MTOV
    te, ce = ef.read_events(p, mode="eta", marker_offset=100)
    assert ce.tolist() == [1] and te.tolist() == [(4096 + 20) * 95 + (4095 - 100)]


def test_valid_record_with_mark_bit(tmp_path):
    """INVALID = 0 with MARK = 1 is not used by the cards. Exact mode reads it as the photon its
    INVALID bit says it is; ETA puts it on the marker offset."""
    p = tmp_path / "vm.spc"
    BH.write_spc_records(p, np.array([0x1FFF_2005], np.uint32))     # ADC 4095 = dtime 0
    t, c = ef.read_events(p, marker_offset=50, channel_offset=5)
    assert c.tolist() == [7] and t.tolist() == [5 * 9500]
    t, c = ef.read_events(p, mode="eta", marker_offset=50, channel_offset=5)
    assert c.tolist() == [52] and t.tolist() == [5 * 95 + 4095]


def test_gap_and_invalid_records_are_counted(tmp_path):
    p = tmp_path / "g.spc"
    recs = np.array([0x0000_0001,                  # photon
                     0x8000_0002,                  # invalid photon
                     0xE000_0003,                  # multiple overflow (3) with GAP
                     0x2000_0004,                  # photon with GAP
                     0x9000_0005], np.uint32)      # marker record without marker bits
    BH.write_spc_records(p, recs)
    t, c, ns, _ = ef.read_events(p, t3=True)
    assert ns.tolist() == [1, 3 * 4096 + 4]
    st_ = ef.clip_file(p).end_state()
    assert (st_[B.ST_LOSS_RECORDS], st_[B.ST_SKIPPED], st_[B.ST_OVERFLOWS]) == (2, 2, 1)
    assert file_info(p)["data_loss"]["loss_records"] == 2


# --- writer -> reader round trips ----------------------------------------------------------------

def _random_events(rng, n, big_gaps=True):
    steps = [0, 1, 100, 4095, 4096, 4097, 3 * 4096, 5000, 1 << 20]
    if big_gaps:
        steps.append(4096 * ((1 << 28) + 5))          # needs two multiple-overflow records
    mt = np.cumsum(rng.choice(steps, n, p=None)).astype(np.int64)
    dtime = rng.integers(0, 4096, n)
    rout = rng.integers(0, 16, n)
    kind = rng.choice(4, n, p=[0.7, 0.1, 0.1, 0.1])    # photon, marker, invalid, photon+gap
    return mt, dtime, rout, kind == 1, kind == 2, kind == 3


def _expected_exact(mt, dtime, rout, markers, invalid, clock, unit, moff):
    ts, cs, dts = [], [], []
    for m, d, r, mk, inv in zip(mt.tolist(), dtime.tolist(), rout.tolist(), markers, invalid):
        if inv:
            continue
        if mk:
            for b in range(4):
                if r >> b & 1:
                    ts.append(round(m * clock))
                    cs.append(moff + b)
                    dts.append(-1)
        else:
            ts.append(round(m * clock) + round(d * unit))
            cs.append(r)
            dts.append(d)
    return np.array(ts, np.int64), np.array(cs, np.int64), np.array(dts, np.int64)


@pytest.mark.parametrize("mtov_after_multi", [False, True])
def test_round_trip_exact_and_eta(tmp_path, mtov_after_multi):
    rng = np.random.default_rng(7 + mtov_after_multi)
    mt, dtime, rout, markers, invalid, gaps = _random_events(rng, 3000)
    p = tmp_path / "r.spc"
    recs = BH.write_spc(p, mt, dtime, rout, markers=markers, gaps=gaps, invalid=invalid,
                        clock_ps=12_500.0, tac_range_s=25e-9, tac_gain=2,
                        mtov_after_multi=mtov_after_multi)
    info = ef.open_source(p)
    unit = 25_000 / (2 * 4096)
    assert info.time_unit_ps == 12_500.0 and info.dtime_unit_ps == pytest.approx(unit, rel=1e-15)
    f = _fields(recs)
    multi = (f["inv"] == 1) & (f["mtov"] == 1) & (f["mark"] == 0)
    assert f["cnt"][multi].max() == (1 << 28) - 1          # a split run of wraps

    t, c, ns, dt = ef.read_events(p, t3=True, marker_offset=100)
    et, ec, edt = _expected_exact(mt, dtime, rout, markers, invalid, 12_500.0,
                                  info.dtime_unit_ps, 100)
    np.testing.assert_array_equal(t, et)
    np.testing.assert_array_equal(c, ec)
    np.testing.assert_array_equal(dt, edt)
    st_ = ef.clip_file(p).end_state()
    assert st_[B.ST_LOSS_RECORDS] == gaps.sum()
    assert st_[B.ST_SKIPPED] == invalid.sum() + (markers & (rout == 0)).sum()
    assert st_[B.ST_OVERFLOWS] == multi.sum()
    assert st_[B.ST_OVERFLOW] == mt[-1] // 4096 * 4096

    te, ce = ef.read_events(p, mode="eta", marker_offset=100, channel_offset=3)
    rt, rc = _eta_reference(recs, 125, coff=3, moff=100)
    np.testing.assert_array_equal(te, rt)
    np.testing.assert_array_equal(ce, rc)


def test_writer_overflow_encoding():
    # one wrap -> MTOV flag; two -> a count record; with mtov_after_multi: count 1 + flag
    f = _fields(BH.encode_spc([4096, 3 * 4096], [0, 0], [0, 0]))
    assert f["mtov"].tolist() == [1, 1, 0] and f["inv"].tolist() == [0, 1, 0]
    assert f["cnt"][1] == 2
    f = _fields(BH.encode_spc([4096, 3 * 4096], [0, 0], [0, 0], mtov_after_multi=True))
    assert f["inv"].tolist() == [0, 1, 0] and f["mtov"].tolist() == [1, 1, 1]
    assert f["cnt"][1] == 1
    # an invalid photon cannot carry MTOV: its single wrap gets a count record
    f = _fields(BH.encode_spc([4096], [0], [0], invalid=[True]))
    assert f["inv"].tolist() == [1, 1] and f["mtov"].tolist() == [1, 0] and f["cnt"][0] == 1
    with pytest.raises(ValueError, match="non-decreasing"):
        BH.encode_spc([5, 4], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="multiple of 100 ps"):
        BH.spc_header_word(9512.0)


# --- window splits --------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_window_split_decodes_like_the_whole_file(tmp_path_factory, data):
    n = data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    big_gaps = data.draw(st.booleans())
    mt, dtime, rout, markers, invalid, gaps = _random_events(rng, n, big_gaps=big_gaps)
    path = tmp_path_factory.mktemp("w") / "w.spc"
    recs = BH.write_spc(path, mt, dtime, rout, markers=markers, gaps=gaps, invalid=invalid,
                        mtov_after_multi=data.draw(st.booleans()))
    # windows of any size, so they often start or end on overflow records
    read_events = data.draw(st.integers(1, len(recs) + 2))
    mode = data.draw(st.sampled_from(["exact", "eta"]))
    assert_split_invariant(path, read_events, mode=mode)


# --- .set handling, hand-built Clips, bad input --------------------------------------------------

def test_without_set_file_warns_and_uses_macrotime_only(tmp_path):
    p = tmp_path / "noset.spc"
    BH.write_spc(p, [10, 5000], [100, 200], [0, 1], set_file=False)
    with pytest.warns(ef.FormatWarning, match="no .set file.*microtime bin width is unknown"):
        info = ef.open_source(p)
    assert info.dtime_unit_ps == 0.0 and info.device == "SPC-1xx/8xx"
    with pytest.warns(ef.FormatWarning):
        t, c, ns, dt = ef.read_events(p, t3=True)
    assert t.tolist() == [10 * 9500, 5000 * 9500] and dt.tolist() == [100, 200]


def test_set_file_is_found_by_stem_and_parsed(tmp_path):
    p = tmp_path / "Meas.spc"
    extra = [("SP_MST_CLK", "I", 1), ("SP_SPE_FN", "S", r"c:\a,b\x.spc"), ("SP_REPEAT", "B", 0)]
    BH.write_spc_records(p, np.zeros(0, np.uint32), set_file=False)
    (tmp_path / "Meas.SET").write_bytes(BH.set_file_bytes(card=0x2B, tac_range_s=12.5e-9,
                                                          tac_gain=4, extra=extra))
    info = ef.open_source(p)
    assert info.device == "SPC-160" and info.header["set_checksum_ok"]
    assert info.header["SP_SPE_FN"] == r"c:\a,b\x.spc" and info.header["SP_REPEAT"] is False
    assert info.dtime_unit_ps == pytest.approx(12_500 / (4 * 4096), rel=1e-15)


def test_unreadable_set_file_warns(tmp_path):
    p = tmp_path / "bad.spc"
    BH.write_spc(p, [1], [0], [0], set_file=False)
    (tmp_path / "bad.set").write_bytes(b"\x8d\x02" + bytes(60))
    with pytest.warns(ef.FormatWarning, match="cannot read .*no \\*SETUP section"):
        info = ef.open_source(p)
    assert info.dtime_unit_ps == 0.0


def test_set_file_of_another_layout_is_an_error(tmp_path):
    p = tmp_path / "qc.spc"
    BH.write_spc(p, [1], [0], [0], card=0x8C)          # SPC-QC-004
    with pytest.raises(ef.FormatError,
                       match=r"qc\.set at byte 0: .*SPC-QC-004.*only the SPC-1xx/8xx"):
        ef.open_source(p)


def test_hand_built_clip_with_record_type_5():
    """ETA's fields for a BH Clip: SYNCRate_pspr = clock, DTRes_pspr = 1, TTRes_pspr = 0."""
    recs = BH.encode_spc([100, 5000, 3 * 4096 + 7], [5, 6, 7], [1, 2, 3])
    clip = ef.Clip()
    clip.RecordType, clip.BytesofRecords = 5, 4
    clip.TTRes_pspr, clip.DTRes_pspr, clip.SYNCRate_pspr = 0, 1, 95
    clip.buffer = recs.tobytes()
    clip.batch_actualread_length = len(clip.buffer)
    t, c = ef.decode_clip(clip, mode="eta")
    rt, rc = _eta_reference(recs, 95)
    np.testing.assert_array_equal(t, rt)
    np.testing.assert_array_equal(c, rc)
    t, c = ef.decode_clip(clip)               # exact: the clock in ps, dtime bins of 1 ps
    assert t.tolist() == [100 * 95 + 5, 5000 * 95 + 6, 12295 * 95 + 7]


def test_detected_by_extension_and_header_word(tmp_path):
    p = tmp_path / "d.spc"
    BH.write_spc(p, [1], [0], [0])
    assert ef.detect_format(p.read_bytes()[:64], str(p)) == ef.FORMAT_BH_spc_4bytes
    q = tmp_path / "d.dat"
    q.write_bytes(p.read_bytes())
    with pytest.raises(ef.FormatError, match="unidentified"):
        ef.open_source(q)
    assert len(ef.read_events(q, format=5)[0]) == 1


@pytest.mark.parametrize("word, match", [
    (0x0000_005F, "bit 31 clear"),
    (0x8000_0000, "clock of 0"),
])
def test_corrupt_header_word(tmp_path, word, match):
    p = tmp_path / "bad.spc"
    BH.write_spc_records(p, np.zeros(3, np.uint32), header_word=word, set_file=False)
    where = rf"bad\.spc at byte 0: header word 0x{word:08X}.*{match}"
    with pytest.raises(ef.FormatError, match=where) as e:
        ef.open_source(p, format=5)
    assert e.value.offset == 0 and e.value.filename.endswith("bad.spc")
    with pytest.raises(ef.FormatError, match="unidentified"):    # no longer looks like B&H
        ef.open_source(p)


def test_file_shorter_than_the_header_word(tmp_path):
    p = tmp_path / "short.spc"
    p.write_bytes(struct.pack("<H", 95))
    with pytest.raises(ef.FormatError, match=r"short\.spc at byte 0: file holds 2 bytes"):
        ef.open_source(p, format=5)


def test_trailing_partial_record_waits(tmp_path):
    p = tmp_path / "part.spc"
    BH.write_spc(p, [1, 2], [0, 0], [0, 0])
    with open(p, "ab") as f:
        f.write(b"\x01\x02")
    assert ef.read_events(p)[0].tolist() == [9500, 2 * 9500]
