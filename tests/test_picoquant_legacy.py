"""Legacy PicoQuant files (.pt2 .pt3 .ht2 .ht3 .t3r): real samples against their reference dumps
and figures (shared/data/README.md), writer -> reader round trips, window splits, header errors.

Channel numbers are ETA's (spec eta-behaviour.md section 1.10); the libpicoquant ``.data`` dumps
number channels their own way, translated in each test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etaflow as ef
from etaflow.errors import FormatError, FormatWarning
from etaflow.formats import picoquant_legacy as L
from etaflow.formats.registry import FORMAT_PQ_LEGACY, detect_format

from conftest import shared_file
from windowing import assert_split_invariant

LEGACY = "data/picoquant-legacy/"
MOFF = 100          # marker offset used to tell markers from photons


def sample(name):
    return shared_file(LEGACY + name)


def quiet_read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatWarning)
        return ef.read_events(path, marker_offset=MOFF, **kw)


def quiet_info(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatWarning)
        return ef.open_source(path)


def dump(path) -> np.ndarray:
    return np.loadtxt(f"{path}.data", delimiter=",", dtype=np.int64, ndmin=2)


def header_dump(path) -> dict:
    out = {}
    with open(f"{path}.header") as f:
        for line in f:
            name, _, value = line.rstrip("\n").partition(" = ")
            out[name] = value
    return out


# --- detection and headers of the real samples ---------------------------------------------------

SAMPLES = {
    # name: (record type, mode, variant, time unit ps, dtime unit ps, data offset, claimed records)
    "libpicoquant_v10.ht2": (0x00010204, "T2", 1, 1.0, 1.0, 800, 52378636),
    "libpicoquant_v20.ht2": (0x01010204, "T2", 2, 1.0, 1.0, 800, 10431577),
    "libpicoquant_v10.ht3": (0x00010304, "T3", 1, 1e12 / 10004460, 4.0, 800, 72463591),
    "libpicoquant_v20.ht3": (0x01010304, "T3", 2, 1e12 / 998898, 16.0, 800, 53606),
    "libpicoquant_v50.t3r": (FORMAT_PQ_LEGACY, "T3", 0, 100000.0, 70.237055, 592, 86997),
    "focuspoint_topfluorPE_2_1_1_1.pt3": (0x00010303, "T3", 0, 1e12 / 78133041, 16.0, 728, 986400),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_header(name):
    path = sample(name)
    with open(path, "rb") as f:
        assert detect_format(f.read(64), str(path)) == FORMAT_PQ_LEGACY
    info = quiet_info(path)
    rtype, mode, variant, unit, dunit, offset, claimed = SAMPLES[name]
    assert info.format == FORMAT_PQ_LEGACY
    assert (info.record_type, info.mode, info.variant) == (rtype, mode, variant)
    assert info.time_unit_ps == pytest.approx(unit, rel=1e-12)
    assert info.dtime_unit_ps == dunit
    eta_dunit = int(dunit if mode == "T3" else unit)
    assert (info.eta_time_unit_ps, info.eta_dtime_unit_ps) == (int(unit), eta_dunit)
    assert (info.data_offset, info.header_records, info.record_size) == (offset, claimed, 4)


@pytest.mark.parametrize("name", [n for n in sorted(SAMPLES) if n.startswith("libpicoquant")])
def test_sample_header_fields_match_dump(name):
    """Every field of libpicoquant's .header dump has the same value in info.header."""
    path = sample(name)
    info = quiet_info(path)
    ref = header_dump(path)
    ref.pop("TTTRGlobCLock", None)          # libpicoquant's spelling of TTTRGlobClock
    for field, text in ref.items():
        ours = info.header[field]
        if isinstance(ours, str):
            assert ours == text, field
        else:   # the dump prints floats with %f
            assert float(text) == pytest.approx(float(ours), abs=1e-6), field
    if name.endswith("t3r"):
        assert info.header["TTTRGlobClock"] == int(header_dump(path)["TTTRGlobCLock"])


def test_resolution_files():
    for name in SAMPLES:
        if name.startswith("libpicoquant"):
            path = sample(name)
            info = quiet_info(path)
            ref = float(open(f"{path}.resolution").read())
            assert round(info.resolution_ps, 2) == ref


# --- events of the real samples against their dumps -------------------------------------------

def test_ht2_v10_matches_dump():
    """V1 rule (33 552 000) across 6 overflows. libpicoquant's v1.0 HT2 decoder halves every time
    tag and the overflow period (it assumes 0.5 ps counts); PicoQuant documents 1 ps ticks, which
    we keep, so the dump holds our time // 2. Its channels: input k-1, sync = 4 (inputs)."""
    path = sample("libpicoquant_v10.ht2")
    with pytest.warns(FormatWarning, match="truncated"):
        info = ef.open_source(path)
    assert info.data_loss["truncated"] == 52378636 - 25
    t, c = quiet_read(path)
    ref = dump(path)
    assert len(t) == 19
    np.testing.assert_array_equal(t // 2, ref[:, 1])
    np.testing.assert_array_equal(c, np.where(ref[:, 0] == 4, 0, ref[:, 0] + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatWarning)
        clip = ef.clip_file(path)
    assert clip.end_state()[6] == 6          # ST_OVERFLOWS


def test_ht2_v20_matches_dump():
    path = sample("libpicoquant_v20.ht2")
    t, c = quiet_read(path)
    ref = dump(path)
    np.testing.assert_array_equal(t, ref[:, 1])
    np.testing.assert_array_equal(c, np.where(ref[:, 0] == 4, 0, ref[:, 0] + 1))
    assert np.all(c == 0)                    # 25 sync records


@pytest.mark.parametrize("name", ["libpicoquant_v10.ht3", "libpicoquant_v20.ht3",
                                  "libpicoquant_v50.t3r"])
def test_t3_matches_dump(name):
    """Dump columns: channel (HH: input - 1 = our channel; T3R: always 0, our route), nsync,
    dtime (HH: in ps, bins x int resolution; T3R: raw bins). The dump lists photons only."""
    path = sample(name)
    info = quiet_info(path)
    t, c, ns, dt = quiet_read(path, t3=True)
    ph = c < MOFF
    ref = dump(path)
    n = len(ref)
    scale = 1 if name.endswith("t3r") else int(info.dtime_unit_ps)
    np.testing.assert_array_equal(c[ph][:n], ref[:, 0])
    np.testing.assert_array_equal(ns[ph][:n], ref[:, 1])
    np.testing.assert_array_equal(dt[ph][:n] * scale, ref[:, 2])
    exact = np.round(ns[ph] * info.time_unit_ps).astype(np.int64) + \
        np.round(dt[ph] * info.dtime_unit_ps).astype(np.int64)
    np.testing.assert_array_equal(t[ph], exact)


def test_ht3_photon_counts():
    assert (quiet_read(sample("libpicoquant_v10.ht3"))[1] < MOFF).sum() == 32
    assert (quiet_read(sample("libpicoquant_v20.ht3"))[1] < MOFF).sum() == 44141


def test_t3r_first_wrap_decision():
    """The v5.0 sample starts with record 0x00070004: invalid, data 0x007 (markers 1-3), no 0x800
    overflow flag. Per PicoQuant's t3rdemo.c it is a marker record, not an overflow, so the first
    photon is at nsync 1033 (the dump) and not 1033 + 65 536 (phconvert)."""
    path = sample("libpicoquant_v50.t3r")
    raw = np.fromfile(path, dtype="<u4", count=2, offset=592)
    assert raw[0] == 0x00070004
    t, c, ns, dt = quiet_read(path, t3=True)
    np.testing.assert_array_equal(c[:4], [MOFF, MOFF + 1, MOFF + 2, 0])
    np.testing.assert_array_equal(ns[:4], [4, 4, 4, 1033])
    np.testing.assert_array_equal(dt[:4], [-1, -1, -1, 2195])
    np.testing.assert_array_equal(t[:3], [400000] * 3)
    info = quiet_info(path)
    assert info.data_loss == {"stop_reason": "error"}          # StopReason 3
    clip = ef.clip_file(path)
    st = clip.end_state()
    assert st[6] == 1425 and st[7] == 0     # overflows, skipped records
    assert (c < MOFF).sum() + 1 + 1425 == 86997                # photons + marker + overflows
    assert t[-1] / 1e12 == pytest.approx(9.35, abs=0.01)      # README: 9.35 s


def test_focuspoint_pt3_figures():
    """data/README.md: in1 482 775, in2 490 562, special 13 063, sync 12.80 ns, 16 ps, 10.96 s."""
    path = sample("focuspoint_topfluorPE_2_1_1_1.pt3")
    info = quiet_info(path)
    assert round(info.time_unit_ps / 1000, 2) == 12.80 and info.dtime_unit_ps == 16.0
    assert info.header["Brd[0].SyncDivider"] == 8 and info.data_loss == {}
    t, c = quiet_read(path)
    counts = np.bincount(c)
    assert (counts[1], counts[2], len(t)) == (482775, 490562, 482775 + 490562)
    clip = ef.clip_file(path)
    assert clip.end_state()[6] == 13063      # every special record is an overflow here
    assert round(t[-1] / 1e12, 2) == 10.96


def test_eta_mode_uses_integer_units():
    path = sample("focuspoint_topfluorPE_2_1_1_1.pt3")
    t, c, ns, dt = quiet_read(path, t3=True, mode="eta")
    np.testing.assert_array_equal(t[:1000], ns[:1000] * 12798 + dt[:1000] * 16)


# --- writers -> reader ----------------------------------------------------------------------------

rng = np.random.default_rng(7)


def _events(n, wrap, chans, marker_masks, dmax=0, marker_step=1, gap_every=5):
    """Sorted coarse times with some gaps of several wraps; random channels, a few markers."""
    steps = rng.integers(0, wrap // 3, n)
    steps[::gap_every] += wrap * rng.integers(1, 4, len(steps[::gap_every]))
    coarse = np.cumsum(steps)
    chan = rng.choice(chans, n)
    is_marker = rng.random(n) < 0.1
    chan[is_marker] = -rng.choice(marker_masks, is_marker.sum())
    coarse[is_marker] -= coarse[is_marker] % marker_step
    coarse = np.maximum.accumulate(coarse)
    fine = rng.integers(0, dmax + 1, n)
    return coarse, fine, chan


def _expected(times, chan, ns=None):
    """Expected (time, channel[, nsync, dtime]) with one event per set marker bit."""
    out = []
    for i, ch in enumerate(chan):
        if ch >= 0:
            sync, dtime = (-1, -1) if ns is None else ns[i]
            out.append((times[i], ch, sync, dtime))
        else:
            for b in range(4):
                if -ch & (1 << b):
                    out.append((times[i], MOFF + b, -1 if ns is None else ns[i][0], -1))
    return [np.array(x) for x in zip(*out)]


KINDS = {
    # kind: (writer kwargs, wrap, channels, marker masks, dtime max)
    "pt2": ({}, 210698240, [0, 1, 2, 3, 4], [1, 2, 5, 15], 0),
    "pt3": ({"sync_rate_hz": 80_000_000, "resolution_ps": 4.0}, 65536, [1, 2, 3, 4], [1, 6, 15],
            4095),
    "ht2-1.0": ({"version": "1.0"}, 33552000, [0, 1, 2, 3, 4], [1, 3, 8], 0),
    "ht2-2.0": ({"version": "2.0"}, 2 ** 25, [0, 1, 2, 3, 4], [1, 3, 8], 0),
    "ht3-1.0": ({"version": "1.0", "sync_rate_hz": 40_000_000, "resolution_ps": 8.0}, 1024,
                [0, 1, 2, 3], [2, 9], 32767),
    "ht3-2.0": ({"version": "2.0", "sync_rate_hz": 40_000_000, "resolution_ps": 8.0}, 1024,
                [0, 1, 2, 3], [2, 9], 32767),
    "t3r-5.0": ({"version": "5.0", "resolution_ps": 70.0}, 65536, [0, 1, 2, 3], [1, 4, 7], 4095),
    "t3r-6.0": ({"version": "6.0", "resolution_ps": 70.0}, 65536, [0, 1, 2, 3], [1, 4, 7], 4095),
}


def write_kind(path, kind, coarse, fine, chan, **extra):
    kw, *_ = KINDS[kind]
    base = kind.split("-")[0]
    kw = {**kw, **extra}
    if base == "pt2":
        L.write_pt2(path, coarse, chan, **kw)
    elif base == "ht2":
        L.write_ht2(path, coarse, chan, **kw)
    else:
        getattr(L, f"write_{base}")(path, coarse, fine, chan, **kw)


def expected_units(kind):
    base = kind.split("-")[0]
    kw = KINDS[kind][0]
    if base == "pt2":
        return 4, 1
    if base == "ht2":
        return 1, 1
    if base == "t3r":
        return 100000, kw["resolution_ps"]
    return 1e12 / kw["sync_rate_hz"], kw["resolution_ps"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_writer_round_trip(tmp_path, kind):
    kw, wrap, chans, masks, dmax = KINDS[kind]
    pt2 = kind == "pt2"
    coarse, fine, chan = _events(400, wrap, chans, masks, dmax, marker_step=16 if pt2 else 1)
    path = tmp_path / f"x.{kind.split('-')[0]}"
    write_kind(path, kind, coarse, fine, chan)
    info = ef.open_source(path)
    unit, dunit = expected_units(kind)
    assert (info.time_unit_ps, info.dtime_unit_ps if info.mode == "T3" else 1) == (unit, dunit)
    assert info.header_records == info.file_records(path.stat().st_size) > len(coarse)
    assert not info.warnings and not info.data_loss
    if info.mode == "T3":
        times = coarse * int(unit) + fine * int(dunit)
        times[chan < 0] = coarse[chan < 0] * int(unit)
        exp = _expected(times, chan, list(zip(coarse, fine)))
        got = ef.read_events(path, marker_offset=MOFF, t3=True)
    else:
        exp = _expected(coarse * int(unit), chan)[:2]
        got = ef.read_events(path, marker_offset=MOFF)
    for g, e in zip(got, exp):
        np.testing.assert_array_equal(g, e)
    assert ef.clip_file(path).end_state()[6] > 0          # overflow records were written


def test_writer_header_options(tmp_path):
    path = tmp_path / "img.pt3"
    L.write_pt3(path, [1, 70000], [5, 6], [1, -2], image_header=[11, 22, 33], comment="hello",
                stop_reason=2)
    info = ef.open_source(path)
    assert info.data_offset == 728 + 12
    np.testing.assert_array_equal(info.header["ImgHdr"], [11, 22, 33])
    assert info.header["Comment"] == "hello" and info.header["Ident"] == "PicoHarp 300"
    assert info.data_loss == {"stop_reason": "overflow"}
    t, c = ef.read_events(path, marker_offset=MOFF)
    np.testing.assert_array_equal(c, [1, MOFF + 1])
    np.testing.assert_array_equal(t, [12500 + 20, 70000 * 12500])
    # a header claiming more records than present: truncated, warned, decoded
    L.write_ht3(path.with_suffix(".ht3"), [3], [4], [0], n_records=10)
    with pytest.warns(FormatWarning, match="truncated"):
        info = ef.open_source(path.with_suffix(".ht3"))
    assert info.data_loss["truncated"] == 9
    with pytest.raises(ValueError, match="channel"):
        L.write_pt3(path, [1], [1], [0])


def test_headerless_t3r_clip(tmp_path):
    """A hand-built Clip with RecordType FORMAT_PQ_LEGACY decodes bare T3R records."""
    path = tmp_path / "x.t3r"
    coarse, fine, chan = _events(200, 65536, [0, 1], [1], 4095)
    L.write_t3r(path, coarse, fine, chan, resolution_ps=70.0)
    info = ef.open_source(path)
    body = path.read_bytes()[info.data_offset:]
    clip = ef.Clip()
    clip.RecordType, clip.SYNCRate_pspr, clip.DTRes_pspr = FORMAT_PQ_LEGACY, 100000, 70
    clip.BytesofRecords = 4
    clip.buffer = np.frombuffer(body, np.uint8)
    clip.batch_actualread_length = len(body)
    got = ef.decode_clip(clip, marker_offset=MOFF)
    ref = ef.read_events(path, mode="eta", marker_offset=MOFF)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
    buf = ef.clip_buffer(path.read_bytes())
    np.testing.assert_array_equal(ef.decode_clip(buf, marker_offset=MOFF)[0],
                                  ef.read_events(path, marker_offset=MOFF)[0])


# --- window splits --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dense_files(tmp_path_factory):
    """One written file per kind where most records are overflows, so windows cut next to them."""
    root = tmp_path_factory.mktemp("legacy")
    files = {}
    for kind, (kw, wrap, chans, masks, dmax) in KINDS.items():
        coarse, fine, chan = _events(60, wrap, chans, masks, dmax,
                                     marker_step=16 if kind == "pt2" else 1, gap_every=1)
        path = root / f"dense_{kind}.{kind.split('-')[0]}"
        write_kind(path, kind, coarse, fine, chan)
        files[kind] = path
    return files


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_split_invariant_written(dense_files, data):
    kind = data.draw(st.sampled_from(sorted(dense_files)))
    path = dense_files[kind]
    n = ef.open_source(path).file_records(path.stat().st_size)
    read_events = data.draw(st.integers(1, n + 1))
    mode = data.draw(st.sampled_from(["exact", "eta"]))
    assert_split_invariant(path, read_events, mode=mode, marker_offset=MOFF)


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(sorted(SAMPLES)), frac=st.floats(0.02, 1.0))
def test_split_invariant_samples(name, frac):
    path = sample(name)
    info = quiet_info(path)
    n = info.file_records(path.stat().st_size)
    lo = 1 if n < 5000 else n // 40      # keep the window count (and runtime) modest
    read_events = max(lo, int(frac * n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatWarning)
        assert_split_invariant(path, read_events, marker_offset=MOFF)


# --- header errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,cut", [("pt3", 10), ("pt3", 200), ("pt3", 600), ("pt3", 700),
                                      ("pt3", 730), ("ht3-2.0", 700), ("ht3-2.0", 790),
                                      ("t3r-5.0", 520), ("t3r-6.0", 600)])
def test_truncated_header(tmp_path, kind, cut):
    kw, wrap, chans, masks, dmax = KINDS[kind]
    full = tmp_path / f"full.{kind[:3]}"
    write_kind(full, kind, np.array([5]), np.array([1]), np.array([chans[0]]),
               **({"image_header": [1, 2]} if kind == "pt3" else {}))
    path = tmp_path / f"cut.{kind[:3]}"
    path.write_bytes(full.read_bytes()[:cut])
    with pytest.raises(FormatError) as e:
        ef.open_source(path, format=FORMAT_PQ_LEGACY)
    assert e.value.filename == str(path)
    assert e.value.offset is not None and e.value.offset <= cut
    assert "truncated" in e.value.problem or "not a legacy" in e.value.problem


def test_truncated_header_names_the_field(tmp_path):
    full = tmp_path / "full.pt3"
    L.write_pt3(full, [5], [1], [1])
    path = tmp_path / "cut.pt3"
    path.write_bytes(full.read_bytes()[:586])     # inside Brd[0].Resolution (584..588)
    with pytest.raises(FormatError, match=r"Brd\[0\]\.Resolution") as e:
        ef.open_source(path)
    assert e.value.offset == 584
    assert f"{path} at byte 584" in str(e.value)


def test_wrong_ident_and_version(tmp_path):
    path = tmp_path / "bad.pt3"
    L.write_pt3(path, [5], [1], [1])
    raw = bytearray(path.read_bytes())
    wrong = bytes(raw)
    wrong = b"PicoHarp 400\0\0\0\0" + wrong[16:]
    path.write_bytes(wrong)
    with pytest.raises(FormatError, match="unidentified"):
        ef.open_source(path)
    with pytest.raises(FormatError, match="not a legacy PicoQuant") as e:
        ef.open_source(path, format=FORMAT_PQ_LEGACY)
    assert (e.value.filename, e.value.offset) == (str(path), 0)
    raw[16:22] = b"1.0\0\0\0"
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="version '1.0'") as e:
        ef.open_source(path)
    assert e.value.offset == 16


def test_histogram_mode_refused(tmp_path):
    path = tmp_path / "hist.ht3"
    L.write_ht3(path, [5], [1], [0])
    raw = bytearray(path.read_bytes())
    raw[340:344] = (0).to_bytes(4, "little")       # MeasurementMode = 0 (interactive histogram)
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="MeasurementMode is 0") as e:
        ef.open_source(path)
    assert e.value.offset == 340


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=64))
def test_sniffer_never_raises(head):
    assert L.sniff(head, "x") in (True, False)
    assert L.sniff(b"HydraHarp\0\0\0\0\0\0\0" + head, "x")
    assert not L.sniff(b"PQTTTR\0\0" + head, "x")
