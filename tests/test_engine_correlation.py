"""The test Correlation recipe (ETA's own test suite) and the Lifetime recipe, end to end.

eta mode must reproduce ETA's stored references bit for bit; exact mode must equal an
exhaustive all-pairs count and not depend on how the file is cut or resumed."""

from __future__ import annotations

import numpy as np
import pytest

import etaflow as ef
from etaflow.eta import ETA
from etaflow.sim import simulate_file

from conftest import shared_file
from naive import pair_histogram

RECIPE = "eta-reference/recipes/tests-Correlation.eta"
HH_T2 = "data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres"
QUTAG = "data/qutag/19_qutag_80MHz_HBT_sync_filtered.qutag"
CASES = {"HHT2": (HH_T2, "results/200204_HH400_T2_320MHz_HBT_g2.npz", 1, 2),
         "quTAG": (QUTAG, "results/19_qutag_80MHz_HBT_sync_filtered.npz", 1, 2)}


@pytest.fixture(scope="module")
def eta_modes():
    recipe = shared_file(RECIPE)
    return {m: ETA(recipe, mode=m) for m in ("eta", "exact")}


@pytest.mark.parametrize("group", sorted(CASES))
def test_eta_mode_reproduces_eta_references(eta_modes, group):
    data, ref, _, _ = CASES[group]
    eta = eta_modes["eta"]
    r = eta.run({"timetagger1": eta.split_file(shared_file(data), cuts=4)}, group=group)
    ref = np.load(shared_file("eta-reference/" + ref))
    np.testing.assert_array_equal(r["h3"], ref["hist1"])
    np.testing.assert_array_equal(r["h4"], ref["hist2"])


def _oracle(path, a, b):
    t, c = ef.read_events(path)
    order = np.argsort(t, kind="stable")          # exact mode sorts sources (quTAG is not)
    t, c = t[order], c[order]
    idx = np.arange(len(t))
    ia, ib = idx[c == a], idx[c == b]
    # h3: start on (the copy of) a, stop on b; h4 the reverse
    h3 = pair_histogram(t[ia], t[ib], 10_000, 16, ia, ib)
    h4 = pair_histogram(t[ib], t[ia], 10_000, 16, ib, ia)
    return h3, h4


@pytest.mark.parametrize("group", sorted(CASES))
def test_exact_mode_equals_exhaustive_pair_count(eta_modes, group):
    data, _, a, b = CASES[group]
    path = shared_file(data)
    eta = eta_modes["exact"]
    r = eta.run({"timetagger1": eta.split_file(path, cuts=4)}, group=group)
    h3, h4 = _oracle(path, a, b)
    np.testing.assert_array_equal(r["h3"], h3)
    np.testing.assert_array_equal(r["h4"], h4)
    if group == "HHT2":     # the figures of data/README.md
        assert (h3.sum(), h4.sum()) == (24_928, 24_663)


def test_exact_mode_does_not_depend_on_windows_or_resume(eta_modes):
    path = shared_file(HH_T2)
    eta = eta_modes["exact"]
    ref = eta.run({"timetagger1": eta.split_file(path, cuts=1)}, group="HHT2")
    for cuts in (2, 4, 7, 100):
        r = eta.run({"timetagger1": eta.split_file(path, cuts=cuts)}, group="HHT2")
        np.testing.assert_array_equal(r["h3"], ref["h3"])
        np.testing.assert_array_equal(r["h4"], ref["h4"])
    # resumed Clip by Clip: one window per eta.run
    gen = eta.clips(path, read_events=50_000)
    task = None
    for _ in range(20):
        r, task = eta.run({"timetagger1": gen}, resume_task=task, group="HHT2", return_task=True,
                          max_autofeed=1)
    r, task = eta.run({"timetagger1": gen}, resume_task=task, group="HHT2", return_task=True)
    np.testing.assert_array_equal(r["h3"], ref["h3"])
    np.testing.assert_array_equal(r["h4"], ref["h4"])


def test_results_do_not_alias_task_state(eta_modes, tmp_path):
    path = shared_file(HH_T2)
    eta = eta_modes["exact"]
    gen = eta.clips(path, read_events=200_000)
    r1, task = eta.run({"timetagger1": gen}, group="HHT2", return_task=True, max_autofeed=1)
    before = r1["h3"].copy()
    r2 = eta.run({"timetagger1": gen}, resume_task=task, group="HHT2")
    assert r2["h3"].sum() > before.sum()
    np.testing.assert_array_equal(r1["h3"], before)
    assert isinstance(r1["timetagger1"], ef.Clip) and r1["timetagger1"].get_pos() > 0


@pytest.mark.parametrize("antibunched", [True, False])
def test_exact_correlation_of_simulated_streams(tmp_path, antibunched):
    """Synthetic HBT data (pulsed single emitter, or Poisson light) against the oracle."""
    path = simulate_file(tmp_path / "hbt.ptu", kind="hh-t2", duration_s=0.02, seed=7,
                         antibunched=antibunched, emission_prob=0.2)
    recipe = shared_file(RECIPE)
    eta = ETA(recipe, mode="exact")
    r = eta.run({"timetagger1": eta.clips(path, read_events=9_999)}, group="HHT2")
    h3, h4 = _oracle(path, 1, 2)
    assert h3.sum() > 1000
    np.testing.assert_array_equal(r["h3"], h3)
    np.testing.assert_array_equal(r["h4"], h4)
    if antibunched:      # g2(0) ~ 0: the zero-delay peak is (nearly) empty, side peaks are not
        centre = h4[:20].sum()
        side = h4[781 - 10:781 + 10].sum()       # 12.5 ns / 16 ps = 781 bins
        assert centre < 0.1 * side


def test_lifetime_exact_is_the_dtime_bincount(tmp_path):
    path = simulate_file(tmp_path / "t3.ptu", kind="hh-t3", duration_s=0.05, seed=3)
    _, c, _, dt = ef.read_events(path, t3=True)
    eta = ETA(shared_file("eta-reference/recipes/Lifetime.eta"), mode="exact")
    for cuts in (1, 3):
        r = eta.run({"UniBuf1": eta.split_file(path, cuts=cuts)}, group="compile")
        np.testing.assert_array_equal(r["t1"], np.bincount(dt[c == 0], minlength=780)[:780])
        np.testing.assert_array_equal(r["t2"], np.bincount(dt[c == 1], minlength=780)[:780])


def test_lifetime_eta_mode_drops_the_last_pending_copy(tmp_path):
    """ETA ends the run when the file ends: the delayed copy of the last photon is never seen."""
    path = simulate_file(tmp_path / "t3.ptu", kind="hh-t3", duration_s=0.05, seed=3)
    t, c = ef.read_events(path)
    eta = ETA(shared_file("eta-reference/recipes/Lifetime.eta"), mode="eta")
    r = eta.run({"UniBuf1": eta.split_file(path, cuts=2)}, group="compile")
    ex = ETA(shared_file("eta-reference/recipes/Lifetime.eta"), mode="exact")
    rx = ex.run({"UniBuf1": ex.split_file(path, cuts=2)}, group="compile")
    last_chn = int(c[-1])
    key = {0: "t1", 1: "t2"}[last_chn]
    assert r[key].sum() == rx[key].sum() - 1


def test_time_going_backwards_beyond_the_lookahead_is_an_error(eta_modes):
    path = shared_file(HH_T2)
    eta = eta_modes["exact"]
    _, task = eta.run({"timetagger1": eta.clips(path, read_events=200_000)}, group="HHT2",
                      return_task=True, max_autofeed=1)
    with pytest.raises(ef.RunError, match="out of time order by more than the look-ahead"):
        eta.run({"timetagger1": eta.clips(path, read_events=200_000)}, resume_task=task,
                group="HHT2")


@pytest.mark.parametrize("mode", ["exact", "eta"])
def test_refilled_raw_clip_resumes_like_one_run(eta_modes, mode):
    """ETA's realtime panels refill one Clip with clip_file(modify_clip=...) between resumed
    runs, with windows of changing size."""
    path = shared_file(HH_T2)
    eta = eta_modes[mode]
    whole = eta.run({"timetagger1": eta.clips(path, read_events=1000)}, group="HHT2")
    cut = eta.clip_file(path, read_events=1000)
    task = None
    sizes = [1000, 5000, 20_000, 7, 100_000]
    k = 0
    while cut:
        r, task = eta.run({"timetagger1": cut}, resume_task=task, group="HHT2", return_task=True,
                          max_autofeed=1)
        cut = eta.clip_file(path, modify_clip=cut, read_events=sizes[k % len(sizes)])
        k += 1
    if mode == "exact":     # drain what is still pending: a run with no new data
        r = eta.run({"timetagger1": iter(())}, resume_task=task, group="HHT2")
        np.testing.assert_array_equal(r["h3"], whole["h3"])
        np.testing.assert_array_equal(r["h4"], whole["h4"])
    else:                   # ETA: windows of other sizes change only the FIFO resets
        assert abs(int(r["h3"].sum()) - int(whole["h3"].sum())) < 50


def test_exhausted_source_delivers_again_on_resume(eta_modes):
    path = shared_file(HH_T2)
    eta = eta_modes["exact"]
    whole = eta.run({"timetagger1": eta.clips(path)}, group="HHT2")
    half = ef.clip_file(path, read_events=200_000)
    r, task = eta.run({"timetagger1": [half]}, group="HHT2", return_task=True)
    rest = ef.clip_file(path, seek_event=200_000)
    r = eta.run({"timetagger1": [rest]}, resume_task=task, group="HHT2")
    # pairs that span the cut were drained before the second half arrived: at most a few lost
    assert 0 <= whole["h3"].sum() - r["h3"].sum() <= 5


def test_exact_mode_sorts_t3_data_with_a_sync_divider(tmp_path):
    """dtime spans 40x the sync period (a sync divider): times step back by up to ~500 ns; the
    exact engine puts them in order and equals the all-pairs count of the sorted events."""
    from etaflow.formats import _pq_encode as E
    from etaflow.formats.picoquant import PtuRecordType, write_ptu
    rng = np.random.default_rng(11)
    n = 20_000
    nsync = np.sort(rng.integers(0, 4_000_000, n))
    dtime = rng.integers(0, 32768, n)
    chans = rng.integers(0, 2, n)
    path = tmp_path / "div.ptu"
    write_ptu(path, E.encode_t3(nsync, dtime, chans), PtuRecordType.HydraHarp2T3,
              12.5e-9, 16e-12)
    t, c = ef.read_events(path)
    assert np.any(np.diff(t) < -100_000)                 # really out of order in the file
    eta = ETA(shared_file(RECIPE), mode="exact")
    r = eta.run({"timetagger1": eta.clips(path, read_events=3000)}, group="HHT3")
    h3, h4 = _oracle(path, 0, 1)
    np.testing.assert_array_equal(r["h3"], h3)
    np.testing.assert_array_equal(r["h4"], h4)
