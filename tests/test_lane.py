"""The gap lane (lang/lane.py) runs a file's photons without the merge, clocks and rings written
branch-free and records made only where a photon follows the previous event by less than a
histogram's range. It must not change a single count: histograms, INTEGERs and the state a
resumed run continues from equal the general loop's, for random streams full of ties and short
gaps, ring capacities that wrap, any window size, both modes, and out-of-order files in eta
mode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from etaflow.errors import RunError
from etaflow.eta import ETA
from etaflow.formats import _pq_encode as E
from etaflow.formats.picoquant import PtuRecordType, write_ptu
from etaflow.lang import lane

from conftest import shared_file
from recipes import events_file, recipe, rfile_vi, vi

LINES = [vi("L1", "a--1-->a:\n    emit(3,0)", edges=[("a", "a", "1")]),
         vi("L2", "a--2-->a:\n    emit(4,0)", edges=[("a", "a", "2")])]


def _corr(name, clock, hist, size, start, stop, bins="(8,2)"):
    """ETA's correlation VI: start on one channel, stop and record_all on the other."""
    return vi(name, f"HISTOGRAM({hist},{bins})\nCLOCK({clock},{size},1)\nstart:\n"
                    f"    {clock}.start()\nstop:\n    {clock}.stop()\n    {hist}.record_all({clock})",
              states=("start", "stop"), initial="stop",
              edges=[("start", "stop", stop), ("stop", "start", start),
                     ("start", "start", start), ("stop", "stop", stop)])


def _recipe(shape: str):
    if shape == "corr":          # ETA's test recipe, with rings small enough to wrap
        entries = LINES + [_corr("bwd", "c3", "h3", 3, "3", "4"),
                           _corr("fwd", "c4", "h4", 2, "4", "3", bins="(5,3)")]
    elif shape == "single":      # one start, one stop: record() from an earlier start
        entries = LINES + [
            vi("one", "CLOCK(c)\nHISTOGRAM(g,(6,2))\na--3-->a:\n    c.start()\n"
                      "a--4-->a:\n    c.stop()\n    g.record(c)", edges=[("a", "a", "3,4")]),
            vi("self", "CLOCK(d)\nHISTOGRAM(z,(3,1))\na--1-->a:\n    d.stop()\n    d.start()\n"
                       "    z.record(d)", edges=[("a", "a", "1")]),   # both set: always-on
            vi("self2", "CLOCK(d2)\nHISTOGRAM(z2,(3,1,'time+1'))\na--2-->a:\n    d2.stop()\n"
                        "    d2.start()\n    z2.record(d2)", edges=[("a", "a", "2")])]
    elif shape == "stateful":    # a VI that tests its state: stops only after a start
        entries = LINES + [
            vi("two", "CLOCK(c)\nHISTOGRAM(g,(6,2))\nstarted:\n    c.start()\nstopped:\n"
                      "    c.stop()\n    g.record(c)", states=("stopped", "started"),
               edges=[("stopped", "started", "3"), ("started", "stopped", "4"),
                      ("started", "started", "3")]),
            _corr("fwd", "c4", "h4", 3, "4", "3")]
    elif shape == "stateful_ring":   # the state is read per photon (a ring start tested on
        # it) while a clock set under a test is left to the walks back, one read by a record
        entries = LINES + [
            vi("two", "CLOCK(c,3,1)\nHISTOGRAM(g,(6,2))\nCLOCK(d)\nHISTOGRAM(k,(6,2))\n"
                      "started:\n    c.start()\nstopped--3-->started:\n    d.start()\n"
                      "stopped:\n    c.stop()\n    g.record_all(c)\n    d.stop()\n"
                      "    k.record(d)", states=("stopped", "started"),
               edges=[("stopped", "started", "3"), ("started", "stopped", "4"),
                      ("started", "started", "3")]),
            _corr("fwd", "c4", "h4", 3, "4", "3")]
    elif shape == "cleared":     # a histogram cleared now and then: counted in place
        entries = LINES + [
            vi("self", "CLOCK(d)\nHISTOGRAM(z,(3,1))\na--1-->a:\n    d.stop()\n    d.start()\n"
                       "    z.record(d)", edges=[("a", "a", "1")]),
            vi("wipe", "INTEGER(n)\na--0-->a:\n    n += 1\n    z.clear()",
               edges=[("a", "a", "0")]),
            _corr("fwd", "c4", "h4", 3, "4", "3")]
    elif shape == "delayed":     # copies 5, 9 and 12 ps after the photon (ETA's fw/bw_delay)
        entries = [vi("L1", "a--1-->a:\n    emit(3,5)\n    emit(5,9)", edges=[("a", "a", "1")]),
                   vi("L2", "a--2-->a:\n    emit(4,12)", edges=[("a", "a", "2")]),
                   _corr("bwd", "c3", "h3", 3, "3", "4", bins="(20,2)"),
                   vi("span", "CLOCK(c1)\nHISTOGRAM(t1,(9,2))\na--3-->a:\n    c1.start()\n"
                              "a--5-->a:\n    c1.stop()\n    t1.record(c1)",
                      edges=[("a", "a", "3,5")])]   # start and stop from one photon
    elif shape == "mixed":       # channel 0 has an action the lane leaves to the general loop
        entries = LINES + [_corr("bwd", "c3", "h3", 4, "3", "4"),
                           vi("count", "INTEGER(n)\na--0-->a:\n    n += 1",
                              edges=[("a", "a", "0")])]
    else:
        raise ValueError(shape)
    return recipe(rfile_vi("RFILE(f,[0,1,2])"), *entries)


def _run(rec, path, mode, window, enable, monkeypatch, rfile="f", resume=False):
    monkeypatch.setattr(lane, "ENABLE", enable)
    eta = ETA(rec, mode=mode)
    assert ("the gap lane" in eta.program_source()) == enable
    if resume:      # one window per eta.run, each resuming the task the previous one left
        gen = eta.clips(path, read_events=window)
        task, out = None, {}
        for i in range(resume):
            part, task = eta.run({rfile: gen}, resume_task=task, return_task=True,
                                 max_autofeed=1)
            # every count made so far is in the results (the lane's own arrays are added in)
            out.update({f"{k} after {i}": np.asarray(v).copy() for k, v in part.items()
                        if k != rfile})
        r, task = eta.run({rfile: gen}, resume_task=task, return_task=True)
    else:
        out = {}
        r, task = eta.run({rfile: eta.clips(path, read_events=window)}, return_task=True)
    out.update({k: np.asarray(v).copy() for k, v in r.items() if k != rfile})
    out["state"] = _state(task)
    return out


def _state(task):
    """Every engine scalar (clock values, ring heads and tails, VI states, the time and channel
    of the last event, source positions) and the values each clock ring holds, oldest first;
    ``_e_hw`` exists in lane programs only."""
    S = {n: int(task.S[i]) for n, (i, _) in task.program.scalars.items() if n != "_e_hw"}
    for n, tab in task.tables.items():
        if n.endswith("_start_tab"):
            head, tail, k = S[n[:-4] + "_head"], S[n[:-4] + "_tail"], len(tab)
            S[n] = [int(tab[(tail + j) % k]) for j in range((head - tail) % k)]
    S["time"], S["chn"] = int(task.S[0]), int(task.S[2])
    return S


def _same(rec, path, mode, window, monkeypatch, **kw):
    plain = _run(rec, path, mode, window, False, monkeypatch, **kw)
    fast = _run(rec, path, mode, window, True, monkeypatch, **kw)
    assert plain.keys() == fast.keys()
    assert plain.pop("state") == fast.pop("state")
    for k in plain:
        assert np.array_equal(plain[k], fast[k]), k
    return plain


# times spread so that gaps are sometimes longer, sometimes shorter than a histogram's range
events = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2)), min_size=1, max_size=80)


@pytest.mark.parametrize("shape", ["corr", "single", "stateful", "stateful_ring", "cleared",
                                   "delayed", "mixed"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ev=events, window=st.integers(1, 9), mode=st.sampled_from(["eta", "exact"]),
       ordered=st.booleans())
def test_lane_changes_no_count(tmp_path, monkeypatch, shape, ev, window, mode, ordered):
    if ordered or mode == "exact":
        ev = sorted(ev, key=lambda e: e[0])    # exact mode sorts anyway; eta keeps file order
    path = events_file(tmp_path / "e.qt", ev)
    r = _same(_recipe(shape), path, mode, window, monkeypatch)
    if shape == "mixed":
        assert int(r["n"]) == sum(c == 0 for _, c in ev)


@pytest.mark.parametrize("shape", ["corr", "single"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ev=events, window=st.integers(1, 9), mode=st.sampled_from(["eta", "exact"]))
def test_lane_resumes_clip_by_clip(tmp_path, monkeypatch, shape, ev, window, mode):
    """The state the lane leaves (ring heads and tails, clock values, the time) is the one a
    resumed task continues from, and the results after each part hold every count so far."""
    ev = sorted(ev, key=lambda e: e[0])
    path = events_file(tmp_path / "e.qt", ev)
    _same(_recipe(shape), path, mode, window, monkeypatch, resume=len(ev) // window)


@pytest.mark.parametrize("enable", [False, True])
def test_lane_counts_survive_an_error(tmp_path, monkeypatch, enable):
    """A run that stops on an error keeps what it counted: the lane's own arrays are added to
    the histograms however a run ends. The second window steps back further than the exact
    mode's look-ahead, after the photons more than the look-ahead (100 ps) before the first
    window's last (3990 ps) have run: t = 0..3880, channels 1 and 2 in turn."""
    monkeypatch.setattr(lane, "ENABLE", enable)
    ev = [(t, 1 + (t // 10) % 2) for t in range(0, 4000, 10)] + [(5, 1)]
    path = events_file(tmp_path / "e.qt", ev)
    eta = ETA(_recipe("single"), mode="exact", lookahead_ps=100)
    assert ("the gap lane" in eta.program_source()) == enable
    task = eta.create_task()
    with pytest.raises(RunError, match="out of time order"):
        eta.run({"f": eta.clips(path, read_events=len(ev) - 1)}, resume_task=task)
    r = task.results()
    # each photon records its own stop - start = 0: channel 1 in z's bin 0, 2 in z2's bin 1
    assert r["z"].tolist() == [195, 0, 0] and r["z2"].tolist() == [0, 194, 0]


@pytest.mark.parametrize("mode", ["eta", "exact"])
def test_lazy_values_restart_from_the_slow_branch(tmp_path, monkeypatch, mode):
    """After the slow branch brings the lazy values up to date, later walks back stop at its
    photon: here the oldest photon (a stop while stopped) must not be judged by the state the
    slow branch saw at 1105 ps (started), or the clock's stop would become 1000 ps."""
    path = events_file(tmp_path / "e.qt", [(1000, 2), (1100, 1), (1105, 1), (5000, 0)])
    _same(_recipe("stateful"), path, mode, 9, monkeypatch)
    state = _run(_recipe("stateful"), path, mode, 9, True, monkeypatch)["state"]
    assert (state["c_stop_rec"], state["c_start_rec"], state["now_3"]) == (0, 1105, 1)


def test_dense_correlation_against_brute_force(tmp_path, monkeypatch):
    """Thousands of photons, many closer than the histogram's range: the lane's exact-mode
    correlation equals an all-pairs count (rings large enough to hold every start in range)."""
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.integers(0, 40, 5000))
    c = rng.integers(1, 3, 5000)
    path = events_file(tmp_path / "e.qt", list(zip(t.tolist(), c.tolist())))
    rec = recipe(rfile_vi("RFILE(f,[0,1,2])"), *LINES,
                 _corr("bwd", "c3", "h3", 200, "3", "4", bins="(50,4)"))
    r = _same(rec, path, "exact", 777, monkeypatch)
    starts, stops = t[c == 1], t[c == 2]
    d = stops[:, None] - starts[None, :]
    # a start at the stop's own time counts when it came first in the file (its copy too)
    pos = np.arange(len(t))
    first = pos[c == 2][:, None] > pos[c == 1][None, :]
    ok = (d >= 0) & (d < 200) & ((d > 0) | first)
    expected = np.bincount((d[ok] // 4).astype(np.int64), minlength=50)
    assert np.array_equal(r["h3"], expected)


def _t3_file(path, n, seed):
    rng = np.random.default_rng(seed)
    nsync = np.cumsum(rng.integers(0, 3, n))
    dtime = rng.integers(0, 60, n)
    recs = E.encode_t3(nsync, dtime, rng.integers(0, 2, n))
    write_ptu(path, recs, PtuRecordType.HydraHarp2T3, 50e-12, 1e-12)   # 50 ps sync period
    return str(path)


@pytest.mark.parametrize("mode", ["eta", "exact"])
@pytest.mark.parametrize("delays", [(0, 0), (7, 30)])
def test_lane_last_sync_lifetime(tmp_path, monkeypatch, mode, delays):
    """The Lifetime recipe's shape on a T3 file: LAST_SYNC records on every photon (counted in
    the lane's own array) and a start/stop VI that tests its state, skipped across gaps."""
    rec = recipe(
        rfile_vi("RFILE(f,[0,1])"),
        vi("d0", f"a--0-->a:\n    emit(8,{delays[0]})", edges=[("a", "a", "0")]),
        vi("d1", f"a--1-->a:\n    emit(9,{delays[1]})", edges=[("a", "a", "1")]),
        vi("t1", "CLOCK(c1)\nHISTOGRAM(t1,(60,1))\ns--8-->s:\n    c1.stop()\n"
                 "    c1.start(LAST_SYNC)\n    t1.record(c1)", states=("s",),
           edges=[("s", "s", "8")]),
        vi("t2", "CLOCK(c2)\nHISTOGRAM(t2,(60,1))\ns--9-->s:\n    c2.stop()\n"
                 "    c2.start(LAST_SYNC)\n    t2.record(c2)", states=("s",),
           edges=[("s", "s", "9")]),
        vi("t3", "CLOCK(c3)\nHISTOGRAM(t3,(30,4))\nstarted:\n    c3.start()\nstopped:\n"
                 "    c3.stop()\n    t3.record(c3)", states=("stopped", "started"),
           edges=[("stopped", "started", "8"), ("started", "stopped", "9"),
                  ("started", "started", "8")]))
    path = _t3_file(tmp_path / "l.ptu", 3000, 5)
    r = _same(rec, path, mode, 211, monkeypatch)
    assert r["t1"].sum() > 1000 and r["t2"].sum() > 1000 and r["t3"].sum() > 0


def test_lane_is_used_where_it_can_run(monkeypatch):
    """ETA's correlation recipe runs in the lane; a group with embedded code or a clock started
    at a computed time does not skip records it cannot prove empty."""
    eta = ETA(str(shared_file("eta-reference/recipes/tests-Correlation.eta")))
    assert "the gap lane" in eta.program_source("HHT2")
    src = ETA(str(shared_file("eta-reference/recipes/Lifetime.eta"))).program_source("compile")
    assert "the gap lane" in src and "_l_scratch0" in src    # LAST_SYNC records, own array
    embedded = recipe(rfile_vi("RFILE(f,[0,1,2])"), *LINES,
                      _corr("bwd", "c3", "h3", 3, "3", "4"),
                      vi("x", "INTEGER(k)\na--0-->a:\n    {{\n        k += 1\n    }}",
                         edges=[("a", "a", "0")]))
    assert "the gap lane" not in ETA(embedded).program_source()
    computed = recipe(rfile_vi("RFILE(f,[0,1,2])"), *LINES,
                      vi("late", "CLOCK(c)\nHISTOGRAM(g,(6,2))\na--3-->a:\n    c.start(AbsTime_ps+50)\n"
                                 "a--4-->a:\n    c.stop()\n    g.record(c)",
                         edges=[("a", "a", "3,4")]))
    assert "the gap lane" not in ETA(computed).program_source()
