"""etaflow's own recipes (src/etaflow/recipes), each against an independent numpy oracle.

Every recipe runs in exact mode. The oracles never use the engine: pair counts by brute force
(tests/naive.py), bincounts of decoded micro times, histograms of event times, the vendor's
FLIM image. The Script Panels are run headless (etaflow.panel.Backend), as `etaflow run`
does, so each test checks a panel and its recipe together; a last test runs every panel of
every bundled recipe.
"""

from __future__ import annotations

import json
import pathlib
import sys
import subprocess
import struct

import numpy as np
import pytest

import etaflow as ef
from etaflow.eta import ETA
from etaflow.formats import _pq_encode as E
from etaflow.formats.picoquant import PtuRecordType, write_ptu
from etaflow.formats.qutag import write_qutag_binary
from etaflow.panel import Backend
from etaflow.recipe import Recipe
from etaflow.sim import hbt_events, simulate_file

from conftest import shared_file
from naive import pair_histogram

RECIPES = pathlib.Path(ef.__file__).resolve().parent / "recipes"
HH_T2 = "data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres"
FLIM_PTU = "data/picoquant-ptu/PTU_Reader_Example_PTU_PicoHarp.ptu"
FLIM_TIF = "data/picoquant-ptu/ref_SymPhoTime_photon_count.tif"
BUILDER = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "build_recipes.py"


def recipe(name: str) -> str:
    return str(RECIPES / f"{name}.eta")


def run_panel(name, panel, tmp_path, **params):
    """Run a Script Panel headless; returns (its globals, the messages it sent)."""
    msgs = []
    g = Backend(on_message=msgs.append, output_dir=str(tmp_path)).run_panel(
        recipe(name), panel, params={k: str(v) for k, v in params.items()})
    errors = [m["msg"] for m in msgs if m.get("op") == "err"]
    assert not errors, errors
    return g, [m.get("msg", "") for m in msgs if m.get("op") == "log"]


def two_sided_oracle(t_a, t_b, bins, width, delay=0):
    """All pairs: bin j (-bins..bins-1) counts tau = tB - tA - delay in [j w, (j+1) w)."""
    t_a = np.asarray(t_a, np.int64) + delay
    pos = pair_histogram(t_a, t_b, bins, width)                 # tau >= 0
    neg = pair_histogram(t_b, t_a - 1, bins, width)             # d = -tau > 0, (d-1)//w
    return np.concatenate([neg[::-1], pos])


def engine_two_sided(r, bins):
    hist = np.concatenate([r["g2_neg"][::-1], r["g2_pos"]])
    hist[bins] += r["g2_zero"][0]
    return hist


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Simulated measurements (etaflow's own simulator): name -> path."""
    d = tmp_path_factory.mktemp("sim")
    return {kind: simulate_file(d / f"{kind}.dat", kind=kind, duration_s=0.02, seed=7)
            for kind in ("hh-t2", "hh-t3", "qutag")}


# --- the recipe files ----------------------------------------------------------------------------

def test_recipe_files_are_built_from_the_sources():
    """The .eta files are what scripts/build_recipes.py writes (reviewable sources)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(BUILDER), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_recipe_loads_with_groups_panels_and_a_readme():
    names = sorted(p.stem for p in RECIPES.glob("*.eta"))
    assert names == sorted(["Correlation", "Countrate", "FLIM", "Lifetime",
                            "Multi_Source_Correlation", "Realtime", "Simulation",
                            "Two-Time_Correlation"])
    readme = (RECIPES / "README.md").read_text(encoding="utf-8")
    for n in names:
        rec = Recipe(recipe(n))
        assert rec.groups() and rec.panels(), n
        assert f"**{n}**" in readme, n
        for e in rec.entries:         # ETA classifies entries by id substring
            kind = "vi" if "vi_" in e.id else "dpp" if "dpp_" in e.id else "var"
            assert kind == e.kind
        obj = json.loads(pathlib.Path(recipe(n)).read_text(encoding="utf-8"))
        assert isinstance(json.loads(obj["eta_index_table"]), list)    # a JSON string (spec 3.1)


# --- 1. Correlation ------------------------------------------------------------------------------

def test_correlation_real_t2_equals_exhaustive_pair_count(tmp_path):
    path = shared_file(HH_T2)
    t, c = ef.read_events(path)
    want = two_sided_oracle(t[c == 1], t[c == 2], 10_000, 16)
    # the VIs, in windows
    eta = ETA(recipe("Correlation"))
    r = eta.run({"timetagger": eta.split_file(path, cuts=3)}, group="HHT2")
    np.testing.assert_array_equal(engine_two_sided(r, 10_000), want)
    assert (int(r["g2_pos"].sum()), int(r["n_a"]), int(r["n_b"])) == (24_928, 159_298, 224_721)
    # the panel
    g, log = run_panel("Correlation", "g2", tmp_path, file=path)
    np.testing.assert_array_equal(g["result"]["coincidences"], want)
    assert g["result"]["figures"]["coincidences"] == want.sum() == 49_591
    assert (tmp_path / "200204_HH400_T2_320MHz_HBT_g2.txt").exists()
    saved = np.loadtxt(tmp_path / "200204_HH400_T2_320MHz_HBT_g2.txt")
    np.testing.assert_array_equal(saved[:, 1], want)
    assert saved[0, 0] == -160_000 and saved[10_000, 0] == 0
    assert any("coincidences: 49591" in m for m in log)


def test_correlation_simulated_t3_with_delay_and_side_peak_g2(tmp_path, sim):
    """HydraHarp T3 layout (inputs 0, 1); the delay shifts tau; g2(0) from the side peaks of
    the 12.5 ns sync period read from the header."""
    path = sim["hh-t3"]
    t, c = ef.read_events(path)
    delay = -2000
    g, log = run_panel("Correlation", "g2", tmp_path, file=path, delay=delay, bins=2000)
    want = two_sided_oracle(t[c == 0], t[c == 1], 2000, 16, delay)
    np.testing.assert_array_equal(g["result"]["coincidences"], want)
    f = g["result"]["figures"]
    assert f["sync period ps"] == 12500.0
    centre = (np.arange(-2000, 2000) + 0.5) * 16
    assert f["central peak coincidences"] == want[np.abs(centre) < 6250].sum()
    side = [want[np.abs(centre - k * 12500) < 6250].sum() for k in (-2, -1, 1, 2)]
    assert f["side peaks used"] == 4 and f["mean side peak coincidences"] == np.mean(side)
    # a single emitter: the zero-delay peak (moved to tau = 2 ns by the delay) is nearly empty
    assert f["g2(0) side-peak normalised"] < 0.3
    assert any("layout HHT3" in m for m in log)


# --- 2. Lifetime ----------------------------------------------------------------------------------

def test_lifetime_equals_bincount_of_micro_times(tmp_path):
    path = shared_file(FLIM_PTU)
    _, c, _, dtime = ef.read_events(path, t3=True, marker_offset=16)
    g, log = run_panel("Lifetime", "lifetime", tmp_path, file=path)
    h = g["result"]["lifetime"]
    assert h.shape == (16, 4096)
    np.testing.assert_array_equal(h[1], np.bincount(dtime[c == 1], minlength=4096))
    assert h.sum() == h[1].sum() == 722_402
    assert any("chn 1 counts: 722402" in m for m in log)


def test_lifetime_simulated_hydraharp_t3(tmp_path, sim):
    path = sim["hh-t3"]
    _, c, _, dtime = ef.read_events(path, t3=True)
    g, _ = run_panel("Lifetime", "lifetime", tmp_path, file=path)
    h = g["result"]["lifetime"]
    for k in (0, 1):
        np.testing.assert_array_equal(h[k], np.bincount(dtime[c == k], minlength=4096))
    assert h[2:].sum() == 0
    # the same VIs run directly, in small windows (dtime_ps as the panel writes it)
    eta = ETA(recipe("Lifetime"))
    eta.recipe.set_parameter("dtime_ps", "16")
    eta.load_recipe(compile=False)
    r = eta.run({"timetagger": eta.clips(path, read_events=5000)}, group="T3")
    np.testing.assert_array_equal(r["lifetime"], h)


# --- 3. Countrate ---------------------------------------------------------------------------------

def test_countrate_equals_histogram_of_event_times(tmp_path):
    path = shared_file(FLIM_PTU)          # a detector and three marker channels
    t, c = ef.read_events(path, marker_offset=16)
    g, log = run_panel("Countrate", "countrate", tmp_path, file=path, binsize=10**10, bins=30)
    counts = g["result"]["counts"]
    edges = np.arange(31) * 10**10
    for ch in range(20):
        want = np.histogram(t[c == ch] - t.min(), bins=edges)[0]
        np.testing.assert_array_equal(counts[ch], want, err_msg=f"channel {ch}")
    assert counts[1].sum() == 722_402 and counts[16].sum() == counts[17].sum() == 256
    assert counts[18].sum() == 1


# --- 4. Two-time correlation ----------------------------------------------------------------------

def two_time_oracle(ref_a, k_a, ref_b, k_b, bins):
    """Brute force: every (A, B) pair with the same reference, at [k_A, k_B] if both in range."""
    h = np.zeros((bins, bins), np.int64)
    by_ref = {}
    for r, k in zip(ref_b, k_b):
        by_ref.setdefault(int(r), []).append(int(k))
    for r, ka in zip(ref_a, k_a):
        for kb in by_ref.get(int(r), ()):
            if 0 <= ka < bins and 0 <= kb < bins:
                h[ka, kb] += 1
    return h


def test_two_time_t3_equals_brute_force(tmp_path):
    path = simulate_file(tmp_path / "pairs.ptu", kind="hh-t3", duration_s=0.01, seed=5,
                         antibunched=False, emission_prob=0.4)
    _, c, nsync, dtime = ef.read_events(path, t3=True)
    g, log = run_panel("Two-Time_Correlation", "two-time", tmp_path, file=path)
    a, b = c == 0, c == 1
    want = two_time_oracle(nsync[a], dtime[a] * 16 // 200, nsync[b], dtime[b] * 16 // 200, 64)
    assert want.sum() > 1000
    np.testing.assert_array_equal(g["result"]["two_time"], want)
    assert g["result"]["figures"]["pairs in the histogram"] == want.sum()


def test_two_time_sync_channel_layout_equals_brute_force(tmp_path):
    """quTAG layout: sync events on channel 5 (only the pulses that were followed by a
    photon, as a sync filter records them), photons on 1 and 2."""
    period = 12_500
    t, det, pulse = hbt_events(0.005, antibunched=False, emission_prob=0.4, seed=9)
    syncs = np.unique(pulse) * period
    times = np.concatenate([syncs, t])
    chans = np.concatenate([np.full(len(syncs), 5), det])
    order = np.lexsort((chans != 5, times))           # a sync before a photon of equal time
    path = tmp_path / "pairs.qutag"
    write_qutag_binary(path, times[order], chans[order])
    g, _ = run_panel("Two-Time_Correlation", "two-time", tmp_path, file=path)
    ref = np.searchsorted(syncs, t, side="right") - 1     # the last sync at or before
    ok = ref >= 0
    k = (t - syncs[np.maximum(ref, 0)]) // 200
    a, b = ok & (det == 1), ok & (det == 2)
    want = two_time_oracle(ref[a], k[a], ref[b], k[b], 64)
    assert want.sum() > 100
    np.testing.assert_array_equal(g["result"]["two_time"], want)


# --- 5. Simulation --------------------------------------------------------------------------------

def test_simulation_invariants_and_seeded_determinism(tmp_path):
    eta = ETA(recipe("Simulation"))
    r1 = eta.run(None, group="simulation", stop_with_source=False)
    r2 = eta.run(None, group="simulation", stop_with_source=False)
    task = eta.create_task("simulation")
    task.set("seed", 2)
    r3 = eta.run(None, resume_task=task, group="simulation", stop_with_source=False)
    for k in r1:
        np.testing.assert_array_equal(r1[k], r2[k], err_msg=k)     # same seed, same result
    assert not np.array_equal(r1["det_t"], r3["det_t"])          # another seed, other photons
    for r in (r1, r3):
        n = {k: int(v) for k, v in r.items() if np.ndim(v) == 0}
        assert n["n_sync"] == 20_000                                # every pulse, then abort()
        assert n["n_dark_a"] > 0 and n["n_dark_b"] > 0
        assert n["n_photon"] == n["n_det_a"] + n["n_det_b"] + n["n_lost"]
        assert 0.15 < n["n_photon"] / n["n_sync"] < 0.25            # emission_prob 0.2
        assert n["n_log"] == n["n_det_a"] + n["n_det_b"] + n["n_dark_a"] + n["n_dark_b"]
        det_t, det_c = r["det_t"][: n["n_log"]], r["det_c"][: n["n_log"]]
        assert np.all(np.diff(det_t) >= 0) and set(np.unique(det_c)) == {4, 5}
        assert det_t[-1] < 20_000 * 12_500 + 100 * 12_500
        assert r["arrival"].sum() == n["n_log"]
        # the correlation VIs count exactly the pairs of the logged detections
        want = two_sided_oracle(det_t[det_c == 4], det_t[det_c == 5], 2000, 16)
        np.testing.assert_array_equal(engine_two_sided(r, 2000), want)
        # one photon per pulse: no coincidence inside +-1 ns of tau = 0 without dark counts
        assert want[2000 - 62: 2000 + 62].sum() <= 2


# --- 6. Multi-source correlation -----------------------------------------------------------------

def test_multi_source_cross_correlation_with_time_shift(tmp_path):
    """Detector 1 recorded by a quTAG, detector 2 by a HydraHarp whose clock started 3.7 us
    later: file2's GlobalTimeShift puts the two on one time base."""
    t, det, _ = hbt_events(0.02, seed=11)
    offset = 3_700_000
    ta, tb = t[det == 1], t[det == 2]
    f1 = tmp_path / "det1.qutag"
    write_qutag_binary(f1, ta, np.ones(len(ta), np.int64))
    f2 = tmp_path / "det2.ptu"
    late = tb[tb >= offset] - offset
    write_ptu(f2, E.encode_t2(late, np.ones(len(late), np.int64)),
              PtuRecordType.HydraHarp2T2, 1e-12)
    g, log = run_panel("Multi_Source_Correlation", "cross-correlation", tmp_path, file1=f1,
                       file2=f2, shift=offset)
    want = two_sided_oracle(ta, late + offset, 10_000, 16)
    np.testing.assert_array_equal(g["result"]["coincidences"], want)
    assert want[9_950:10_050].sum() == 0 and want.sum() > 1000    # antibunching at tau = 0


# --- 7. Realtime ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["accumulate", "align"])
def test_realtime_growing_file_gives_the_whole_file_result(tmp_path, sim, mode):
    full = sim["hh-t2"]
    info = ef.open_source(full)
    growing = tmp_path / "growing.ptu"

    # a separate writer process appends the records while the panel reads the file
    writer = (
        "import sys, time\n"
        "src, dst, off = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "data = open(src, 'rb').read()\n"
        "time.sleep(0.2)                     # the panel waits for the file to appear\n"
        "with open(dst, 'wb') as f:\n"
        "    f.write(data[:off]); f.flush()\n"
        "    step = 4 * 3001 + 2             # chunks that end inside a record\n"
        "    for i in range(off, len(data), step):\n"
        "        f.write(data[i:i + step]); f.flush(); time.sleep(0.02)\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(full), str(growing),
                             str(info.data_offset)])
    try:
        g, log = run_panel("Realtime", "realtime", tmp_path, file=growing, interval=0.05,
                           idle_timeout=1.5, records_per_update=8000, mode=mode)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    t, c = ef.read_events(full)
    np.testing.assert_array_equal(g["result"]["coincidences"],
                                  two_sided_oracle(t[c == 1], t[c == 2], 10_000, 16))
    updates = [m for m in log if m.startswith("update ")]
    assert len(updates) >= 3 and g["result"]["figures"]["updates"] == len(updates)
    assert all(("(this update)" in m) == (mode == "align") for m in updates)


# --- 8. FLIM -------------------------------------------------------------------------------------

def read_tiff(path) -> np.ndarray:
    """A minimal reader for an uncompressed, single-image TIFF (the vendor's float32 image)."""
    d = pathlib.Path(path).read_bytes()
    bo = {b"II": "<", b"MM": ">"}[d[:2]]
    (ifd,) = struct.unpack(bo + "I", d[4:8])
    (n,) = struct.unpack(bo + "H", d[ifd: ifd + 2])
    size = {1: 1, 3: 2, 4: 4}
    tags = {}
    for k in range(n):
        tag, typ, cnt, val = struct.unpack(bo + "HHI4s", d[ifd + 2 + 12 * k: ifd + 14 + 12 * k])
        if typ in size:
            raw = val if size[typ] * cnt <= 4 else d[struct.unpack(bo + "I", val)[0]:][
                : size[typ] * cnt]
            tags[tag] = struct.unpack(bo + {1: "B", 3: "H", 4: "I"}[typ] * cnt,
                                      raw[: size[typ] * cnt])
    w, h, bits = tags[256][0], tags[257][0], tags[258][0]
    assert tags.get(259, (1,))[0] == 1, "compressed TIFF"
    kind = {1: "u", 2: "i", 3: "f"}[tags.get(339, (1,))[0]]
    raw = b"".join(d[o: o + c] for o, c in zip(tags[273], tags[279]))
    return np.frombuffer(raw, f"{bo}{kind}{bits // 8}").reshape(h, w)


def test_flim_image_equals_the_vendor_image(tmp_path):
    """Pixel convention: a photon belongs to the line of the last line-start marker at or before
    its sync period, x = floor(PixX * (syncs since line start) / (syncs in the line)); micro-time
    bins not wholly inside the sync period (here bin 132 of 133) are left out, as SymPhoTime
    does. Then the image equals SymPhoTime's pixel for pixel."""
    path = shared_file(FLIM_PTU)
    ref = read_tiff(shared_file(FLIM_TIF))
    assert ref.shape == (256, 256) and ref.sum() == 722_368
    g, log = run_panel("FLIM", "image", tmp_path, file=path)
    img = g["result"]["image"]
    diff = img - ref.astype(np.int64)
    assert img.sum() == ref.sum() == 722_368
    assert np.count_nonzero(diff) == 0
    f = g["result"]["figures"]
    assert (f["frames"], f["lines"], f["photons"], f["photons left out"]) == (1, 256, 722_402, 34)
    assert np.isfinite(g["result"]["mean_arrival_ns"][img > 0]).all()
    saved = np.loadtxt(tmp_path / "PTU_Reader_Example_PTU_PicoHarp_flim_photon_count.txt")
    np.testing.assert_array_equal(saved, img)
    # counting the last, partial micro-time bin too gives the independent reader's image:
    # 34 photons more, each in its own pixel (+1)
    eta = ETA(g["eta"].recipe)
    task = eta.create_task("T3")
    task.set("max_dtime", 1 << 30)
    img_all = eta.run({"timetagger": eta.clips(path)}, resume_task=task, group="T3")["image"]
    d2 = img_all - ref.astype(np.int64)
    assert img_all.sum() == 722_402 and np.count_nonzero(d2) == 34 and d2.max() == 1


# --- every panel of every bundled recipe, headless -----------------------------------------------

PANELS = [("Correlation", "g2", {"file": "hh-t2"}),
          ("Lifetime", "lifetime", {"file": "hh-t3"}),
          ("Countrate", "countrate", {"file": "hh-t2", "binsize": "1e10", "bins": "30"}),
          ("Two-Time_Correlation", "two-time", {"file": "hh-t3"}),
          ("Simulation", "simulate", {}),
          ("Multi_Source_Correlation", "cross-correlation", {"file1": "qutag",
                                                             "file2": "hh-t2"}),
          ("Realtime", "realtime", {"file": "hh-t2", "idle_timeout": "0.2",
                                    "interval": "0.05"}),
          ("FLIM", "image", {"file": FLIM_PTU})]


def test_the_panel_list_covers_every_panel():
    have = {(p.stem, e.name) for p in RECIPES.glob("*.eta") for e in Recipe(str(p)).panels()}
    assert have == {(r, p) for r, p, _ in PANELS}


@pytest.mark.parametrize("name,panel,params", PANELS, ids=[f"{r}-{p}" for r, p, _ in PANELS])
def test_every_panel_runs_headless(tmp_path, sim, name, panel, params):
    params = {k: (sim[v] if v in sim else shared_file(v) if v.startswith("data/") else v)
              for k, v in params.items()}
    g, log = run_panel(name, panel, tmp_path, **params)
    assert g["result"]["figures"] and log
    outputs = list(tmp_path.glob("*.txt"))
    assert outputs, "a panel saves its result"
    assert all(p.stat().st_size > 0 for p in outputs)
