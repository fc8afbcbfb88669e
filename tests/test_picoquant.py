"""PicoQuant PTU: real files against independent figures, every record type round-trips, bad
input gives a FormatError with a byte offset."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etaflow as ef
from etaflow.formats import _pq_encode as E
from etaflow.formats.picoquant import PtuRecordType, TagType, ptu_header_bytes, write_ptu
from etaflow.info import file_info

from conftest import shared_file
from windowing import assert_split_invariant

HH_T2 = "data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres"
V30_T2 = "data/picoquant-ptu/libpicoquant_v30_t2.ptu"
PH_T3 = "data/picoquant-ptu/PTU_Reader_Example_PTU_PicoHarp.ptu"


# --- real files ---------------------------------------------------------------------------------

def test_hydraharp_t2_reference_counts():
    path = shared_file(HH_T2)
    info = ef.open_source(path)
    assert (info.device, info.mode, info.record_type) == ("HydraHarp V2", "T2", 0x01010204)
    assert info.data_offset == 4392 and info.time_unit_ps == 1.0
    t, c = ef.read_events(path)
    assert len(t) == 384_019
    assert np.bincount(c).tolist() == [0, 159_298, 224_721]
    assert np.all(np.diff(t) >= 0)
    d = file_info(path)
    assert d["records"] == 409_482 and d["events"] == 384_019 and d["markers"] == 0
    assert d["channels"] == {"1": 159_298, "2": 224_721}
    assert d["sync_period_ps"] is None and d["resolution_ps"] == 1.0
    assert abs(d["duration_ps"] - 1e12) < 1e8      # 1.000 s


def test_v30_t2_differs_from_wrong_dump_by_v1_overflow_period():
    """The dump applies the V1 period 33 552 000 to this V2 file: it lags by k x 2432 ps."""
    path = shared_file(V30_T2)
    dump = np.loadtxt(shared_file(V30_T2 + ".data"), delimiter=",", dtype=np.int64)
    t, c = ef.read_events(path)
    assert len(t) == 305_565 and set(np.unique(c)) == {1}
    n = len(dump)
    wraps = t[:n] // 2**25
    assert np.all(dump[:, 0] + 1 == c[:n])          # dump input 0 == ETA channel 1
    np.testing.assert_array_equal(dump[:, 1], t[:n] - 2432 * wraps)
    assert wraps.max() > 0                           # the difference really occurs


def test_picoharp_t3_flim_markers():
    path = shared_file(PH_T3)
    info = ef.open_source(path)
    assert (info.mode, info.record_type) == ("T3", 0x00010303)
    assert abs(info.sync_period_ps - 12_817.2) < 0.1 and abs(info.dtime_unit_ps - 96.97) < 0.01
    assert info.header["ImgHdr_PixX"] == 256
    t, c, ns, dt = ef.read_events(path, t3=True, marker_offset=100)
    photons = c < 100
    assert photons.sum() == 722_402
    assert np.bincount(c[~photons] - 100).tolist() == [256, 256, 1]   # line start, stop, frame
    assert dt[photons].max() < 133
    # exact time is the exact sync period times the sync index plus the dtime bin
    np.testing.assert_array_equal(
        t[photons], np.round(ns[photons] * info.sync_period_ps).astype(np.int64)
        + np.round(dt[photons] * info.dtime_unit_ps).astype(np.int64))
    d = file_info(path)
    assert d["records"] == 723_240 and d["markers"] == 513 and d["channels"] == {"1": 722_402}
    assert abs(d["duration_ps"] - 0.273e12) < 0.001e12


def test_picoharp_t3_eta_mode_truncates_resolutions():
    path = shared_file(PH_T3)
    info = ef.open_source(path)
    assert (info.TTRes_pspr, info.DTRes_pspr, info.SYNCRate_pspr) == (12817, 96, 12817)
    t, c, ns, dt = ef.read_events(path, mode="eta", t3=True)
    ph = dt >= 0
    np.testing.assert_array_equal(t[ph], ns[ph] * 12817 + dt[ph] * 96)


def test_header_tags_are_typed():
    info = ef.open_source(shared_file(PH_T3))
    types = {t.name: t.type for t in info.tags}
    assert types["CreatorSW_Name"] == "AnsiString" and info.header["CreatorSW_Name"] == "SymPhoTime 64"
    assert types["Header_End"] == "Empty8"
    assert isinstance(info.header["MeasDesc_GlobalResolution"], float)


# --- writer -> reader round trips for all 12 record types ----------------------------------------

T2_TYPES = [r for r in PtuRecordType if (r >> 8) & 0xFF == 2]
T3_TYPES = [r for r in PtuRecordType if (r >> 8) & 0xFF == 3]


def _is_picoharp(rt):
    return rt & 0xFF == 3


def _random_t2(rng, n, picoharp):
    ticks = np.sort(rng.integers(0, 2**31, n)).astype(np.int64)
    chans = rng.integers(0, 5, n) if picoharp else rng.integers(0, 9, n)
    markers = rng.random(n) < 0.1
    chans[markers] = -rng.integers(1, 16, markers.sum())
    if picoharp:    # marker records lose the low 4 time bits
        ticks[markers] &= ~np.int64(0xF)
        order = np.argsort(ticks, kind="stable")
        ticks, chans = ticks[order], chans[order]
    return ticks, chans


def _expected(ticks, chans, res, coff=0, moff=50, eta=False, picoharp=False):
    """Events from encoded inputs, independent of the kernels: one marker event per set bit
    (ETA: the lowest only, and PicoHarp T2 marker times keep the mask in their low bits)."""
    ts, cs = [], []
    for tk, ch in zip(ticks.tolist(), chans.tolist()):
        if ch >= 0:
            ts.append(tk * res)
            cs.append(coff + ch)
        else:
            for b in range(4):
                if -ch & (1 << b):
                    ts.append((tk | -ch if eta and picoharp else tk) * res)
                    cs.append(moff + b)
                    if eta:
                        break
    return np.array(ts, np.int64), np.array(cs, np.int64)


@pytest.mark.parametrize("rt", T2_TYPES, ids=lambda r: PtuRecordType(r).name)
def test_t2_round_trip(tmp_path, rt):
    rng = np.random.default_rng(rt & 0xFFFF)
    ph = _is_picoharp(rt)
    ticks, chans = _random_t2(rng, 3000, ph)
    records = E.encode_t2(ticks, chans, picoharp=ph, hydraharp_v1=(rt == PtuRecordType.HydraHarpT2))
    path = tmp_path / "x.ptu"
    write_ptu(path, records, rt, 4e-12)
    info = ef.open_source(path)
    assert info.record_type == rt and info.mode == "T2"
    for eta in (False, True):
        t, c = ef.read_events(path, mode="eta" if eta else "exact", marker_offset=50)
        et, ec = _expected(ticks, chans, 4, eta=eta, picoharp=ph)
        np.testing.assert_array_equal(t, et)
        np.testing.assert_array_equal(c, ec)


@pytest.mark.parametrize("rt", T3_TYPES, ids=lambda r: PtuRecordType(r).name)
def test_t3_round_trip_exact_sync_period(tmp_path, rt):
    rng = np.random.default_rng(rt & 0xFFFF)
    ph = _is_picoharp(rt)
    n = 3000
    nsync = np.sort(rng.integers(0, 5_000_000, n)).astype(np.int64)
    dtime = rng.integers(0, 4096 if ph else 32768, n)
    chans = rng.integers(1, 5, n) if ph else rng.integers(0, 8, n)
    chans[rng.random(n) < 0.05] = -3
    records = E.encode_t3(nsync, dtime, chans, picoharp=ph,
                          hydraharp_v1=(rt == PtuRecordType.HydraHarpT3))
    path = tmp_path / "x.ptu"
    period_s = 1.2512587663189168e-08
    write_ptu(path, records, rt, period_s, 16e-12)
    info = ef.open_source(path)
    assert info.sync_period_ps == 12512.587663189168 and info.SYNCRate_pspr == 12512
    t, c, ns, dt = ef.read_events(path, t3=True, marker_offset=50)
    np.testing.assert_array_equal(ns, np.repeat(nsync, np.where(chans == -3, 2, 1)))
    photon = dt >= 0
    np.testing.assert_array_equal(
        t[photon], np.round(ns[photon] * 12512.587663189168).astype(np.int64) + dt[photon] * 16)
    te, ce, _, dte = ef.read_events(path, t3=True, mode="eta", marker_offset=50)
    ph_e = dte >= 0
    np.testing.assert_array_equal(te[ph_e], ns[photon] * 12512 + dt[photon] * 16)
    assert (~ph_e).sum() == (chans == -3).sum()       # ETA: lowest marker bit only


def test_hydraharp_v1_and_v2_overflow_periods_differ(tmp_path):
    ticks = np.array([5, 40_000_000, 100_000_000], np.int64)
    chans = np.array([1, 2, 1])
    for v1, wrap in ((True, 33_552_000), (False, 2**25)):
        recs = E.encode_t2(ticks, chans, hydraharp_v1=v1)
        rt = PtuRecordType.HydraHarpT2 if v1 else PtuRecordType.HydraHarp2T2
        write_ptu(tmp_path / "v.ptu", recs, rt, 1e-12)
        t, _ = ef.read_events(tmp_path / "v.ptu")
        np.testing.assert_array_equal(t, ticks)
        n_ovf = ((recs >> 25) == 0x7F).sum()
        assert n_ovf == (2 if not v1 else 2)


# --- window splits ------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_window_split_decodes_like_the_whole_file(tmp_path_factory, data):
    rt = data.draw(st.sampled_from(list(PtuRecordType)))
    n = data.draw(st.integers(1, 400))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ph = _is_picoharp(rt)
    # big gaps put many overflow records in a row, so windows often start or end on them
    gaps = rng.choice([0, 1, 1000, 2**26, 2**30], size=n)
    coarse = np.cumsum(gaps).astype(np.int64)
    if (rt >> 8) & 0xFF == 2:
        chans = rng.integers(0, 5, n) if ph else rng.integers(0, 4, n)
        chans[rng.random(n) < 0.1] = -5
        if ph:
            coarse[chans < 0] &= ~np.int64(0xF)
            coarse = np.maximum.accumulate(coarse)
        recs = E.encode_t2(coarse, chans, picoharp=ph, hydraharp_v1=(rt == PtuRecordType.HydraHarpT2))
    else:
        chans = rng.integers(1, 5, n) if ph else rng.integers(0, 4, n)
        chans[rng.random(n) < 0.1] = -5
        recs = E.encode_t3(coarse // 64, rng.integers(0, 4096, n), chans, picoharp=ph,
                           hydraharp_v1=(rt == PtuRecordType.HydraHarpT3))
    path = tmp_path_factory.mktemp("w") / "w.ptu"
    write_ptu(path, recs, rt, 1.2512587663189168e-08, 4e-12)
    read_events = data.draw(st.integers(1, len(recs) + 2))
    mode = data.draw(st.sampled_from(["exact", "eta"]))
    assert_split_invariant(path, read_events, mode=mode)


def test_real_files_split_invariant():
    for rel, r in ((HH_T2, 33_333), (PH_T3, 100_003), (V30_T2, 4096)):
        assert_split_invariant(shared_file(rel), r)


# --- odd and bad input --------------------------------------------------------------------------

def _write(tmp_path, head: bytes, records=np.arange(10, dtype="<u4")):
    p = tmp_path / "f.ptu"
    p.write_bytes(head + np.asarray(records, "<u4").tobytes())
    return p


def test_variable_size_tags_before_header_end_are_skipped(tmp_path):
    """ETA jumps to the payload *length* as an absolute offset for these; we skip them."""
    extra = [("Blob", b"\x01" * 200, TagType.BinaryBlob), ("Arr", [1.5, 2.5], TagType.Float8Array),
             ("Wide", "Grüße", TagType.WideString),
             ("When", 45000.5, TagType.TDateTime), ("Bits", 0x80, TagType.BitSet64)]
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 3, extra)
    p = _write(tmp_path, head, E.encode_t2(np.array([1, 2, 3]), np.array([1, 2, 0])))
    info = ef.open_source(p)
    assert info.header["Blob"] == b"\x01" * 200
    assert info.header["Arr"].tolist() == [1.5, 2.5]
    assert info.header["Wide"] == "Grüße"
    assert info.header["When"].year == 2023
    t, c = ef.read_events(p)
    assert t.tolist() == [1, 2, 3] and c.tolist() == [1, 2, 0]


def test_number_of_records_zero_warns_and_uses_file_size(tmp_path):
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 0)
    p = _write(tmp_path, head, E.encode_t2(np.arange(7), np.ones(7, int)))
    with pytest.warns(ef.FormatWarning, match="NumberOfRecords is 0"):
        info = ef.open_source(p)
    assert info.file_records(p.stat().st_size) == 7
    assert len(ef.read_events(p)[0]) == 7


def test_out_of_order_tag_indices_warn(tmp_path):
    extra = [("HWInpChan_Offset", 5, TagType.Int8, 1), ("HWInpChan_Offset", 6, TagType.Int8, 0)]
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 1, extra)
    p = _write(tmp_path, head, E.encode_t2(np.array([9]), np.array([1])))
    with pytest.warns(ef.FormatWarning, match="out of order"):
        info = ef.open_source(p)
    assert info.header["HWInpChan_Offset[0]"] == 6


def test_trailing_partial_record_is_not_decoded(tmp_path):
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 3)
    p = _write(tmp_path, head, E.encode_t2(np.array([1, 2, 3]), np.array([1, 1, 1])))
    with open(p, "ab") as f:
        f.write(b"\xff\xff")
    assert ef.read_events(p)[0].tolist() == [1, 2, 3]
    assert file_info(p)["data_loss"]["partial_trailing_record_bytes"] == 2


def test_truncated_header_names_file_and_offset(tmp_path):
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 3)
    p = tmp_path / "t.ptu"
    p.write_bytes(head[:200])
    with pytest.raises(ef.FormatError, match=r"t\.ptu at byte 160: header ends before"):
        ef.open_source(p)


def test_wrong_magic(tmp_path):
    p = tmp_path / "junk.ptu"
    p.write_bytes(b"NOTAPTU!" + bytes(100))
    with pytest.raises(ef.FormatError, match="unidentified time-tag format.*pass format="):
        ef.open_source(p)
    with pytest.raises(ef.FormatError, match="not a PicoQuant PTU file"):
        ef.open_source(p, format=ef.FORMAT_PQ)


def test_unknown_record_type(tmp_path):
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 1)
    head = head.replace(struct.pack("<q", 0x01010204), struct.pack("<q", 0x01010299))
    p = _write(tmp_path, head)
    with pytest.raises(ef.FormatError, match="unknown TTTR record type 0x01010299") as e:
        ef.open_source(p)
    assert e.value.offset is not None and e.value.offset > 16


def test_illegal_record_names_its_byte_offset(tmp_path):
    head = ptu_header_bytes(PtuRecordType.PicoHarpT2, 4e-12, 4e-12, 3)
    recs = np.array([0x10000001, 0x70000002, 0x10000003], np.uint32)   # channel 7 is illegal
    p = _write(tmp_path, head, recs)
    with pytest.raises(ef.FormatError, match=r"illegal .* record #1 \(value 0x70000002\)") as e:
        ef.read_events(p)
    assert e.value.offset == len(head) + 4


def test_measurement_mode_mismatch_warns(tmp_path):
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T3, 1e-8, 1e-12, 1)
    head = head.replace(b"Measurement_Mode".ljust(32, b"\0") + struct.pack("<iIq", -1, TagType.Int8, 3),
                        b"Measurement_Mode".ljust(32, b"\0") + struct.pack("<iIq", -1, TagType.Int8, 2))
    p = _write(tmp_path, head, E.encode_t3(np.array([1]), np.array([1]), np.array([0])))
    with pytest.warns(ef.FormatWarning, match="Measurement_Mode is 2"):
        info = ef.open_source(p)
    assert info.mode == "T3"


def test_truncated_file_warns(tmp_path):
    head = ptu_header_bytes(PtuRecordType.HydraHarp2T2, 1e-12, 1e-12, 100)
    p = _write(tmp_path, head, E.encode_t2(np.array([1]), np.array([1])))
    with pytest.warns(ef.FormatWarning, match="truncated"):
        info = ef.open_source(p)
    assert info.data_loss["truncated"] == 99


def _random_hh_t3(rng, n):
    """HydraHarp T3 records in random order: photons, overflows carrying a count (V2) or not,
    markers, and an illegal special record."""
    kind = rng.choice(4, n, p=[0.7, 0.2, 0.08, 0.02])
    raw = rng.integers(0, 1024, n)
    recs = np.where(kind == 0, (rng.integers(0, 64, n) << 25) | (rng.integers(0, 32768, n) << 10)
                    | raw, 0)
    recs = np.where(kind == 1, (1 << 31) | (63 << 25) | np.where(rng.random(n) < 0.3, 0, raw), recs)
    recs = np.where(kind == 2, (1 << 31) | (rng.integers(1, 16, n) << 25) | raw, recs)
    recs = np.where(kind == 3, (1 << 31) | (40 << 25) | raw, recs)
    return recs.astype("<u4").view(np.uint8)


def _random_hh_t2(rng, n):
    """HydraHarp T2 records: photons, overflows with counts, syncs, markers, illegal records."""
    kind = rng.choice(5, n, p=[0.8, 0.08, 0.05, 0.05, 0.02])
    tt = rng.integers(0, 1 << 25, n)
    recs = np.where(kind == 0, (rng.integers(0, 64, n) << 25) | tt, 0)
    recs = np.where(kind == 1, (1 << 31) | (63 << 25) | np.where(rng.random(n) < 0.3, 0, tt % 7),
                    recs)
    recs = np.where(kind == 2, (1 << 31) | tt, recs)                                  # sync
    recs = np.where(kind == 3, (1 << 31) | (rng.integers(1, 16, n) << 25) | tt, recs)  # markers
    recs = np.where(kind == 4, (1 << 31) | (40 << 25) | tt, recs)                      # illegal
    return recs.astype("<u4").view(np.uint8)


def _kernel_params(variant, emit=True, eta=False, ttres=12500, dtres=16, ttres_f=None,
                   dtres_f=None):
    from etaflow.formats import base as B
    ip = np.zeros(B.IP_SIZE, np.int64)
    fp = np.zeros(B.FP_SIZE, np.float64)
    ip[B.IP_VARIANT], ip[B.IP_EMIT], ip[B.IP_ETA] = variant, int(emit), int(eta)
    ip[B.IP_MARKER_OFFSET], ip[B.IP_TIME_SHIFT] = 70, 5
    ip[B.IP_INTTIME] = int(ttres_f is None)
    ip[B.IP_TTRES], ip[B.IP_DTRES] = ttres, dtres
    fp[B.FP_TTRES] = ttres if ttres_f is None else ttres_f
    fp[B.FP_DTRES] = dtres if dtres_f is None else dtres_f
    return ip, fp


def _decode_all(kernel, buf, ip, fp, with_t3=False, block=None):
    """Run a kernel over every record of buf in output blocks of ``block`` events (None: one
    block): (times, channels, final state)."""
    from etaflow.formats import base as B
    n = len(buf) // 4
    cap = block + B.MAX_EVENTS_PER_RECORD if block else 4 * n
    state = np.zeros(B.STATE_SIZE, np.int64)
    state[B.ST_FIRST_BAD] = -1
    t, c = np.zeros(cap, np.int64), np.zeros(cap, np.uint8)
    ns, dt = np.zeros(cap if with_t3 else 0, np.int64), np.zeros(cap if with_t3 else 0, np.int64)
    done, got = 0, []
    while done < n:
        done, k = kernel(buf, done, n, state, ip, fp, t, c, ns, dt)
        got.append((t[:k].copy(), c[:k].copy()))
    return (np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got]), state)


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("units", ["int", "float", "int-dtime"])
def test_hydraharp_t3_fast_path_equals_general_loop(variant, units):
    """decode_hh_t3 has a branch-free fast path for (time, channel) output; the general loop
    (taken when nsync/dtime are wanted too) is the reference, with small output blocks so that
    blocks also end inside runs of markers."""
    from etaflow.formats import _pq_kernels as K
    buf = _random_hh_t3(np.random.default_rng(variant * 10 + len(units)), 20_000)
    ip, fp = _kernel_params(variant, ttres_f=None if units == "int" else 12500.3,
                            dtres_f={"int": None, "float": 16.25, "int-dtime": 16.0}[units])
    t0, c0, s0 = _decode_all(K.decode_hh_t3, buf, ip, fp, block=8)
    t1, c1, s1 = _decode_all(K.decode_hh_t3, buf, ip, fp, with_t3=True, block=8)
    assert len(t0) > 0.6 * 20_000
    assert np.array_equal(t0, t1) and np.array_equal(c0, c1)
    assert np.array_equal(s0, s1)


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("eta", [False, True])
@pytest.mark.parametrize("t3", [False, True])
@pytest.mark.parametrize("markers", [True, False])
def test_hydraharp_state_scan_equals_decoding(variant, eta, t3, markers):
    """Seeking and clips_list advance the decoder state without emitting events (counting fast
    paths); the state must equal the one the general decoding loop leaves behind: photons,
    syncs, markers (several bits; ETA mode counts the lowest only), overflows with counts,
    illegal records. Without markers and illegal records the scan is one vectorised count."""
    from etaflow.formats import _pq_kernels as K
    from etaflow.formats import base as B
    rng = np.random.default_rng(variant * 2 + eta + 50 * t3)
    buf = (_random_hh_t3 if t3 else _random_hh_t2)(rng, 20_000)
    if not markers:
        recs = buf.view("<u4")
        chan = (recs >> 25) & 0x3F
        other = (recs >> 31 == 1) & (chan != 63) & ((chan != 0) | t3)
        buf = recs[~other].copy().view(np.uint8)
    kernel = K.decode_hh_t3 if t3 else K.decode_hh_t2
    # the reference: T3 through its general loop (nsync/dtime wanted), T2 through float times
    decoded = _decode_all(kernel, buf, *_kernel_params(variant, eta=eta, ttres_f=1.0),
                          with_t3=t3)[2]
    scanned = _decode_all(kernel, buf, *_kernel_params(variant, emit=False, eta=eta))[2]
    assert decoded[B.ST_EVENTS] > 0.6 * 20_000 and (decoded[B.ST_MARKERS] > 0) == markers
    assert decoded[B.ST_OVERFLOWS] > 1000
    np.testing.assert_array_equal(decoded, scanned)
