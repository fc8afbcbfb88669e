"""Each tool action against hand-computed values (spec 3.7 and Appendix A), in both modes where
they differ."""

from __future__ import annotations

import numpy as np
import pytest

import etaflow as ef
from etaflow.eta import ETA

from recipes import events_file, recipe, rfile_vi, vi

INF = 9223372036854775807


def run(rec, path, mode, group="main", read_events=1024, **kw):
    eta = ETA(rec, mode=mode)
    return eta.run({"f": eta.clips(path, read_events=read_events)}, group=group, **kw)


# A1: clock ring and record_all ---------------------------------------------------------------
A1_ETA = {1: [100], 2: [90, 100], 3: [80, 90, 100], 4: [70, 80, 90], 5: [70, 80], 6: [50, 70],
          7: [40, 50, 60], 8: [30, 40, 50]}


@pytest.mark.parametrize("n", range(1, 9))
@pytest.mark.parametrize("mode", ["eta", "exact"])
def test_ring_record_all(tmp_path, n, mode):
    rec = recipe(rfile_vi(), vi("corr", "CLOCK(c,4,1)\nHISTOGRAM(h,(200,1))\n"
                                "a--1-->a:\n    c.start()\na--2-->a:\n    c.stop()\n"
                                "    h.record_all(c)", edges=[("a", "a", "1,2")]))
    path = events_file(tmp_path / "e.qt", [(10 * k, 1) for k in range(n)] + [(100, 2)])
    h = run(rec, path, mode)["h"]
    if mode == "eta":   # ring keeps 3 of 4, and skips slot 0 when wrapped
        expected = A1_ETA[n]
    else:               # the 4 newest starts, all of them
        expected = sorted(100 - 10 * k for k in range(max(0, n - 4), n))
    assert np.nonzero(h)[0].tolist() == expected


@pytest.mark.parametrize("mode,expected", [("eta", [20]), ("exact", [15, 20])])
def test_record_all_break_in_eta_ends_one_loop(tmp_path, mode, expected):
    """ETA walks a wrapped ring in two loops (head-1 .. 1, then N-1 .. tail); a start beyond the
    histogram ends only the loop it is in (spec 3.7, record_all, verified). Starts in file order
    10, 20, 30, 80, 85, 0 leave ETA's ring [85 | 0 | 30 | 80] with head 2, tail 3: the first loop
    meets 0 (100 ps before the stop, beyond 50 bins) and stops, the second still counts 80;
    85 in slot 0 is skipped. Exact mode sorts the file and visits its 4 newest starts, 85, 80,
    30 (the break), 20."""
    rec = recipe(rfile_vi(), vi("corr", "CLOCK(c,4,1)\nHISTOGRAM(h,(50,1))\n"
                                "a--1-->a:\n    c.start()\na--2-->a:\n    c.stop()\n"
                                "    h.record_all(c)", edges=[("a", "a", "1,2")]))
    starts = [10, 20, 30, 80, 85, 0]
    path = events_file(tmp_path / "e.qt", [(t, 1) for t in starts] + [(100, 2)])
    h = run(rec, path, mode)["h"]
    assert np.nonzero(h)[0].tolist() == expected and h.sum() == len(expected)


# A2: single-clock binning with modifiers ----------------------------------------------------
@pytest.mark.parametrize("modifier,expected", [(None, {0: 1, 1: 1}), ('"time-1"', {0: 2}),
                                               ('"time+64"', {4: 1, 5: 1, 0: 0})])
def test_single_clock_binning(tmp_path, modifier, expected):
    dims = f"(20,16,{modifier})" if modifier else "(20,16)"
    rec = recipe(rfile_vi(), vi("b", f"CLOCK(c)\nHISTOGRAM(h,{dims})\n"
                                "a--1-->a:\n    c.start()\na--2-->a:\n    c.stop()\n"
                                "a--3-->a:\n    h.record(c)", edges=[("a", "a", "1,2,3")]))
    # intervals 16, 15 and (a start after the last stop) -985
    ev = [(1000, 1), (1016, 2), (1017, 3), (2000, 1), (2015, 2), (2016, 3), (3000, 1), (3001, 3)]
    for mode in ("eta", "exact"):
        h = run(rec, events_file(tmp_path / "e.qt", ev), mode)["h"]
        assert {int(k): int(h[k]) for k in np.nonzero(h)[0]} == {k: v for k, v in
                                                                 expected.items() if v}


def test_record_without_new_stop_counts_again(tmp_path):
    rec = recipe(rfile_vi(), vi("b", "CLOCK(c)\nHISTOGRAM(h,(20,16))\n"
                                "a--1-->a:\n    c.start()\na--2-->a:\n    c.stop()\n"
                                "a--3-->a:\n    h.record(c)", edges=[("a", "a", "1,2,3")]))
    path = events_file(tmp_path / "e.qt", [(0, 1), (40, 2), (50, 3), (60, 3)])
    assert run(rec, path, "exact")["h"][2] == 2


# A7: emit with period and repeat: FIFO order (eta) versus time order (exact) ------------------
@pytest.mark.parametrize("mode,order", [("eta", [0, 10, 20, 5, 15, 25]),
                                        ("exact", [0, 5, 10, 15, 20, 25])])
def test_emit_repeat_period_order(tmp_path, mode, order):
    rec = recipe(rfile_vi(), vi("e", "a--1-->a:\n    emit(9,0,10,3)", edges=[("a", "a", "1")]),
                 vi("log", "TABLE(log,[8])\nINTEGER(k)\n"
                           "a--9-->a:\n    {{\n        log[k] = AbsTime_ps\n        k += 1\n    }}",
                    edges=[("a", "a", "9")]))
    path = events_file(tmp_path / "e.qt", [(0, 1), (5, 1), (100, 2)])
    r = run(rec, path, mode)
    assert r["log"][:6].tolist() == order and int(r["k"]) == 6


# A8: COINCIDENCE fill / reset ---------------------------------------------------------------------
def test_coincidence_flags(tmp_path):
    rec = recipe(rfile_vi(), vi("co", "COINCIDENCE(co,2,flag,50)\nINTEGER(hits)\nTABLE(flags,[6])\n"
                                "INTEGER(k)\n"
                                "a--1-->a:\n    co.fill(0)\n    {{\n        flags[k] = flag\n"
                                "        k += 1\n        hits += flag\n    }}\n"
                                "a--2-->a:\n    co.fill(1)\n    {{\n        flags[k] = flag\n"
                                "        k += 1\n        hits += flag\n    }}\n"
                                "a--3-->a:\n    co.reset()", edges=[("a", "a", "1,2,3")]))
    ev = [(0, 1), (5, 2), (100, 1), (400, 2), (500, 2), (510, 1), (2000, 3)]
    for mode in ("eta", "exact"):
        r = run(rec, events_file(tmp_path / "e.qt", ev), mode)
        assert r["flags"].tolist() == [0, 1, 0, 0, 0, 1]
        assert int(r["hits"]) == 2 and int(r["flag"]) == 0


def test_coincidence_across_windows(tmp_path):
    """ETA resets coincidence slots at every window entry; exact mode keeps them."""
    rec = recipe(rfile_vi(), vi("co", "COINCIDENCE(co,2,flag,50)\nINTEGER(hits)\n"
                                "a--1-->a:\n    co.fill(0)\n    hits += flag\n"
                                "a--2-->a:\n    co.fill(1)\n    hits += flag",
                                edges=[("a", "a", "1,2")]))
    path = events_file(tmp_path / "e.qt", [(5 * k, 1 + k % 2) for k in range(6)])
    assert int(run(rec, path, "eta", read_events=100)["hits"]) == 5
    assert int(run(rec, path, "eta", read_events=1)["hits"]) == 0
    assert int(run(rec, path, "exact", read_events=1)["hits"]) == 5


# A9: image prefixes and 2-D histograms --------------------------------------------------------
def test_image_and_2d_histograms(tmp_path):
    rec = recipe(rfile_vi(), vi("img", "CLOCK(c1)\nCLOCK(c2)\nINTEGER(px)\n"
                                "HISTOGRAM(img,[(50,1)],[3])\nHISTOGRAM(h2,[(40,1),(40,1)])\n"
                                "a--1-->a:\n    c1.start()\n    c2.start()\n"
                                "a--2-->a:\n    c1.stop()\n    img[px].record(c1)\n    px += 1\n"
                                "a--3-->a:\n    c2.stop()\n    h2.record(c1,c2)",
                                edges=[("a", "a", "1,2,3")]))
    ev = [(0, 1), (10, 2), (100, 1), (120, 2), (125, 3)]
    r = run(rec, events_file(tmp_path / "e.qt", ev), "exact")
    assert np.argwhere(r["img"]).tolist() == [[0, 10], [1, 20]]
    assert np.argwhere(r["h2"]).tolist() == [[20, 25]]


@pytest.mark.parametrize("mode", ["eta", "exact"])
def test_record_all_into_an_image_row_and_with_a_modifier(tmp_path, mode):
    """record_all into the row an image prefix selects (a runtime call) and into a histogram
    with a time modifier (written out): the same starts, worked out by hand. Starts 0 and 10,
    a stop at 30, a start at 35, a stop at 40. ETA's ring of 3 keeps 2: the second stop sees
    35 and 10; exact mode's sees 35, 10 and 0."""
    rec = recipe(rfile_vi(), vi("img", "CLOCK(c1,3,1)\nINTEGER(px)\nHISTOGRAM(img,[(50,1)],[2])\n"
                                "HISTOGRAM(m,[(50,1,'time+1')])\n"
                                "a--1-->a:\n    c1.start()\n"
                                "a--2-->a:\n    c1.stop()\n    img[px].record_all(c1)\n"
                                "    m.record_all(c1)\n    px += 1",
                                edges=[("a", "a", "1,2")]))
    ev = [(0, 1), (10, 1), (30, 2), (35, 1), (40, 2)]
    r = run(rec, events_file(tmp_path / "e.qt", ev), mode)
    second = [5, 30] if mode == "eta" else [5, 30, 40]
    assert np.argwhere(r["img"]).tolist() == [[0, 20], [0, 30]] + [[1, d] for d in second]
    assert r["img"].sum() == 2 + len(second)
    assert {int(b): int(r["m"][b]) for b in np.nonzero(r["m"])[0]} == \
        {d + 1: [20, 30, *second].count(d) for d in [20, 30, *second]}


# A10 / A15: abort, and resuming after it -------------------------------------------------------
def test_abort_and_resume(tmp_path):
    rec = recipe(rfile_vi(), vi("ab", "INTEGER(x)\nINTEGER(seen)\n"
                                "a--1-->a:\n    x += 1\na--2-->a:\n    x += 1\n    abort()\n"
                                "    seen = AbsTime_ps", edges=[("a", "a", "1,2")]))
    path = events_file(tmp_path / "e.qt", [(0, 1), (10, 2), (20, 1), (30, 1), (40, 1), (50, 1)])
    for mode in ("eta", "exact"):
        eta = ETA(rec, mode=mode)
        gen = eta.clips(path)
        r, task = eta.run({"f": gen}, return_task=True)
        assert int(r["x"]) == 2 and int(r["seen"]) == INF
        r = eta.run({"f": gen}, resume_task=task)
        assert int(r["x"]) == 6


# A11: interrupt() with max_autofeed=1 and resume; get_pos --------------------------------------
@pytest.mark.parametrize("mode", ["eta", "exact"])
def test_interrupt_resume_positions(tmp_path, mode):
    rec = recipe(rfile_vi(), vi("it", "INTEGER(x)\na--1-->a:\n    x += 1\n"
                                "    {{\n        if x % 3 == 0:\n            INTERRUPT = 1\n    }}",
                                edges=[("a", "a", "1")]))
    path = events_file(tmp_path / "e.qt", [(10 * k, 1) for k in range(10)])
    eta = ETA(rec, mode=mode)
    gen = eta.clips(path)
    task, xs, pos = None, [], []
    for _ in range(4):
        r, task = eta.run({"f": gen}, resume_task=task, return_task=True, max_autofeed=1)
        xs.append(int(r["x"]))
        pos.append(r["f"].get_pos())
    assert xs == [3, 6, 9, 10]
    if mode == "eta":
        assert pos == [3, 6, 9, 10]
    # with the default auto-feed an interrupt is a no-op
    r = ETA(rec, mode=mode).run({"f": ETA(rec).clips(path)})
    assert int(r["x"]) == 10


# A13: conditional emit, and the last pending event ----------------------------------------------
def test_emit_repeat_zero_and_the_last_event(tmp_path):
    rec = recipe(rfile_vi(), vi("e", "a--1-->a:\n    emit(9,0,5,0)", edges=[("a", "a", "1")]),
                 vi("n", "INTEGER(got)\na--9-->a:\n    got += 1", edges=[("a", "a", "9")]))
    path = events_file(tmp_path / "e.qt", [(10 * k, 1) for k in range(12)])
    assert int(run(rec, path, "eta")["got"]) == 11      # ETA drops the copy of the last event
    assert int(run(rec, path, "exact")["got"]) == 12


def test_integer_repeat_zero_emits_nothing(tmp_path):
    rec = recipe(rfile_vi(), vi("e", "INTEGER(flag)\na--1-->a:\n    emit(9,0,0,flag)\n"
                                "a--2-->a:\n    flag = 1", edges=[("a", "a", "1,2")]),
                 vi("n", "INTEGER(got)\na--9-->a:\n    got += 1", edges=[("a", "a", "9")]))
    path = events_file(tmp_path / "e.qt", [(0, 1), (10, 1), (20, 2), (30, 1), (40, 1), (50, 3)])
    assert int(run(rec, path, "exact")["got"]) == 2


def test_cancel_emit(tmp_path):
    rec = recipe(rfile_vi(), vi("e", "a--1-->a:\n    emit(9,100)\na--2-->a:\n    cancel_emit(9)",
                                edges=[("a", "a", "1,2")]),
                 vi("n", "INTEGER(got)\na--9-->a:\n    got += 1", edges=[("a", "a", "9")]))
    path = events_file(tmp_path / "e.qt", [(0, 1), (10, 1), (50, 2), (200, 1), (1000, 3)])
    assert int(run(rec, path, "exact")["got"]) == 1


# A4: code before the first header -----------------------------------------------------------------
@pytest.mark.parametrize("cuts,eta_count", [(1, 1), (3, 3), (5, 4)])
def test_beforeloop_runs_per_window_in_eta_mode(tmp_path, cuts, eta_count):
    rec = recipe(rfile_vi(), vi("b", "INTEGER(cnt)\ncnt = cnt + 1\na--1-->a:\n    pass",
                                edges=[("a", "a", "1")]))
    path = events_file(tmp_path / "e.qt", [(10 * k, 1) for k in range(12)])
    for mode, want in (("eta", eta_count), ("exact", 1)):
        eta = ETA(rec, mode=mode)
        r = eta.run({"f": eta.split_file(path, cuts=cuts)})
        assert int(r["cnt"]) == want


# A6: result names --------------------------------------------------------------------------------
def test_result_name_filter_in_eta_mode_only(tmp_path):
    code = "\n".join(f"INTEGER({n})" for n in ("chn_hist", "my_start", "good", "last_value",
                                               "fine")) + "\nTABLE(tab,[2])\na--1-->a:\n    pass"
    rec = recipe(rfile_vi(), vi("names", code, edges=[("a", "a", "1")]))
    path = events_file(tmp_path / "e.qt", [(0, 1)])
    assert sorted(run(rec, path, "eta")) == ["f", "fine", "good", "tab"]
    assert sorted(run(rec, path, "exact")) == ["chn_hist", "f", "fine", "good", "last_value",
                                                "my_start", "tab"]


# A16: histogram clear ---------------------------------------------------------------------------
def test_histogram_clear(tmp_path):
    rec = recipe(rfile_vi(), vi("c", "CLOCK(c)\nHISTOGRAM(h,(10,10))\n"
                                "a--1-->a:\n    c.start()\na--2-->a:\n    c.stop()\n"
                                "    h.record(c)\na--3-->a:\n    h.clear()",
                                edges=[("a", "a", "1,2,3")]))
    ev = [(0, 1), (15, 2), (100, 3), (200, 1), (235, 2)]
    h = run(rec, events_file(tmp_path / "e.qt", ev), "exact")["h"]
    assert np.nonzero(h)[0].tolist() == [3] and h.sum() == 1


# A17: a window with only overflow records does not end the analysis ---------------------------
def test_eventless_window_does_not_stop(tmp_path):
    from etaflow.formats.picoquant import PtuRecordType, write_ptu
    recs = np.array([0x0000000A, 0xFE000001, 0xFE000001, 0x00000014, 0x0000001E,
                     0x0200001E + 10], np.uint32)
    path = tmp_path / "a17.ptu"
    write_ptu(path, recs, PtuRecordType.HydraHarp2T2, 1e-12)
    rec = recipe(rfile_vi("RFILE(f,[0,1,2])"), vi("n", "INTEGER(got)\nTABLE(ts,[4])\n"
                                                   "a--1-->a:\n    {{\n        ts[got] = AbsTime_ps\n"
                                                   "        got += 1\n    }}\n"
                                                   "a--2-->a:\n    {{\n        ts[got] = AbsTime_ps\n"
                                                   "        got += 1\n    }}",
                                                   edges=[("a", "a", "1,2")]))
    for mode in ("eta", "exact"):
        r = run(rec, path, mode, read_events=1)
        assert r["ts"].tolist() == [10, 67108884, 67108894, 67108904]


# tie order ----------------------------------------------------------------------------------------
def test_tie_order_two_rfiles_and_virtual_channels(tmp_path):
    """n = 5 leaves (2 RFILEs + virtual 5..7): ties go f2 > f1 > v7 > v6 > v5 (spec 4.2)."""
    rec = recipe(vi("src", "RFILE(f,[0,1])\nRFILE(g,[2,3])", states=("s",)),
                 vi("d", "a--0-->a:\n    emit(5,0)\n    emit(6,0)\n    emit(7,0)",
                    edges=[("a", "a", "0")]),
                 vi("log", "TABLE(log,[10])\nINTEGER(k)\n"
                    "a--0,2,5,6,7-->a:\n    {{\n        log[k] = chn\n        k += 1\n    }}",
                    edges=[("a", "a", "0,2,5,6,7")]))
    pf = events_file(tmp_path / "f.qt", [(100, 0), (1000, 1)])
    pg = events_file(tmp_path / "g.qt", [(100, 0), (1000, 1)])   # raw 0 + offset 2 -> channel 2
    for mode in ("eta", "exact"):
        eta = ETA(rec, mode=mode)
        r = eta.run({"f": eta.clips(pf), "g": eta.clips(pg)})
        assert r["log"][:5].tolist() == [2, 0, 7, 6, 5]


def test_keyword_arguments_work(tmp_path):
    rec = recipe(rfile_vi(), vi("k", "INTEGER(x, init_value=5)\nCLOCK(c, max_start=3)\n"
                                "HISTOGRAM(h, dims=(10, 10))\na--1-->a:\n    c.start()\n"
                                "a--2-->a:\n    c.stop()\n    h.record_all(c)",
                                edges=[("a", "a", "1,2")]))
    r = run(rec, events_file(tmp_path / "e.qt", [(0, 1), (10, 1), (20, 1), (25, 2)]), "exact")
    assert int(r["x"]) == 5 and np.nonzero(r["h"])[0].tolist() == [0, 1, 2]


def test_last_sync_on_t3(tmp_path):
    """start(LAST_SYNC): ETA folds with the truncated period; exact mode with the exact one."""
    from etaflow.formats import _pq_encode as E
    from etaflow.formats.picoquant import PtuRecordType, write_ptu
    period = 12_512.587663189168
    nsync = np.array([0, 1000, 100_000, 10_000_000], np.int64)
    dtime = np.array([10, 20, 30, 40], np.int64)
    path = tmp_path / "t3.ptu"
    write_ptu(path, E.encode_t3(nsync, dtime, np.zeros(4, np.int64)), PtuRecordType.HydraHarp2T3,
              period * 1e-12, 16e-12)
    rec = recipe(rfile_vi("RFILE(f,[0,1])"),
                 vi("l", "CLOCK(c)\nHISTOGRAM(h,(50000,1))\na--0-->a:\n    c.stop()\n"
                         "    c.start(LAST_SYNC)\n    h.record(c)", edges=[("a", "a", "0")]))
    hx = run(rec, path, "exact")["h"]
    assert np.nonzero(hx)[0].tolist() == (dtime * 16).tolist()
    he = run(rec, path, "eta")["h"]
    t = nsync * 12512 + dtime * 16          # ETA's times: truncated period
    assert np.nonzero(he)[0].tolist() == sorted((t % 12512).tolist())


def test_start_syncs_fills_the_ring_with_the_sync_grid(tmp_path):
    from etaflow.formats import _pq_encode as E
    from etaflow.formats.picoquant import PtuRecordType, write_ptu
    path = tmp_path / "t3.ptu"
    write_ptu(path, E.encode_t3(np.array([50]), np.array([5]), np.array([0])),
              PtuRecordType.HydraHarp2T3, 10e-9, 1e-12)          # 10 000 ps sync, exact
    rec = recipe(rfile_vi("RFILE(f,[0,1])"),
                 vi("s", "CLOCK(c,4,1)\nHISTOGRAM(h,(100,1000))\na--0-->a:\n    c.start(SYNCS)\n"
                         "    c.stop()\n    h.record_all(c)", edges=[("a", "a", "0")]))
    for mode, want in (("eta", [0, 10, 20]), ("exact", [0, 10, 20, 30])):
        h = run(rec, path, mode)["h"]
        # T = 500 005 ps; syncs at 500 000, 490 000, ...: ETA's ring keeps size-1 = 3 of them,
        # exact mode the 4 the clock declares
        assert np.nonzero(h)[0].tolist() == want


def test_sort_single_clocks(tmp_path):
    rec = recipe(rfile_vi(), vi("s", "CLOCK(a1)\nCLOCK(a2)\nTABLE(out,[2])\n"
                                "a--1-->a:\n    a1.stop(50)\n    a2.stop(20)\n"
                                "    [a1,a2].sort('stop')\n    {{\n        out[0] = a1_stop_rec\n"
                                "        out[1] = a2_stop_rec\n    }}", edges=[("a", "a", "1")]))
    r = run(rec, events_file(tmp_path / "e.qt", [(0, 1)]), "exact")
    assert r["out"].tolist() == [20, 50]


def test_full_virtual_queue_is_an_error(tmp_path):
    rec = recipe(rfile_vi(), vi("q", "VFILE(9, 4)\na--1-->a:\n    emit(9, 1000000)",
                                edges=[("a", "a", "1")]),
                 vi("n", "INTEGER(got)\na--9-->a:\n    got += 1", edges=[("a", "a", "9")]))
    path = events_file(tmp_path / "e.qt", [(k, 1) for k in range(10)])
    with pytest.raises((ef.RunError, ef.RecipeError), match="queue full"):
        run(rec, path, "exact")


def test_recipe_syntax_error_names_vi_line_and_column(tmp_path):
    rec = recipe(rfile_vi(), vi("bad", "CLOCK(c)\na--1-->a:\n    c.start(\n", edges=[("a", "a", "1")]))
    with pytest.raises(ef.RecipeError) as e:
        ETA(rec)
    assert e.value.vi == "bad" and e.value.line == 3 and "syntax error" in str(e.value)
    rec = recipe(rfile_vi(), vi("bad2", "CLOCK(c)\nb--1-->a:\n    c.start()", edges=[("a", "a", "1")]))
    with pytest.raises(ef.RecipeError, match="state 'b' is not on the state diagram") as e:
        ETA(rec)
    assert (e.value.vi, e.value.line, e.value.column) == ("bad2", 2, 1)
    rec = recipe(rfile_vi(), vi("bad3", "a--1-->a:\n    h.record(c)", edges=[("a", "a", "1")]))
    with pytest.raises(ef.RecipeError, match="'h' is not declared"):
        ETA(rec)


def test_two_rfiles_with_global_time_shift(tmp_path):
    """Multi-source correlation: the second file's Clips carry a GlobalTimeShift."""
    rec = recipe(vi("src", "RFILE(f,[0,1])\nRFILE(g,[2,3])", states=("s",)),
                 vi("c", "CLOCK(c)\nHISTOGRAM(h,(100,10))\na--1-->a:\n    c.start()\n"
                         "a--3-->a:\n    c.stop()\n    h.record(c)", edges=[("a", "a", "1,3")]))
    times = [1000 * k for k in range(1, 50)]
    pf = events_file(tmp_path / "f.qt", [(t, 1) for t in times])
    pg = events_file(tmp_path / "g.qt", [(t, 1) for t in times])   # raw 1 + offset 2 = 3

    def shifted(path, shift):
        for clip in ETA().clips(path, read_events=7):
            clip.GlobalTimeShift = shift
            yield clip
    for mode in ("eta", "exact"):
        eta = ETA(rec, mode=mode)
        r = eta.run({"f": eta.clips(pf, read_events=5), "g": shifted(pg, 250)})
        assert np.nonzero(r["h"])[0].tolist() == [25]
        assert r["h"][25] >= 48


def test_a_fileless_simulation_can_be_stopped():
    """A group with no RFILE runs until abort(); eta.request_stop() still ends it."""
    import threading
    rec = recipe(vi("clock", "INTEGER(n)\nemit(1,10)\na--1-->a:\n    n += 1\n    emit(1,10)",
                    edges=[("a", "a", "1")]))
    eta = ETA(rec, mode="exact")
    eta.create_task()
    timer = threading.Timer(0.5, eta.request_stop)
    timer.start()
    with pytest.raises(ef.RunError, match="stopped"):
        eta.run(None, stop_with_source=False)
    timer.join()


def test_coincidence_clear_with_an_integer_slot(tmp_path):
    """co.clear(k) with an INTEGER k (ETA cannot compile it, its spec says it should work)."""
    rec = recipe(rfile_vi(), vi("co", "COINCIDENCE(co,2,flag,50)\nINTEGER(k)\nTABLE(flags,[3])\n"
                                "INTEGER(n)\n"
                                "a--1-->a:\n    co.fill(0)\n    {{\n        flags[n] = flag\n"
                                "        n += 1\n    }}\n"
                                "a--2-->a:\n    co.fill(1)\n    {{\n        flags[n] = flag\n"
                                "        n += 1\n    }}\n"
                                "a--3-->a:\n    co.clear(k)", edges=[("a", "a", "1,2,3")]))
    # fill 0 at 0, fill 1 at 5 (coincidence), clear slot k=0 at 8, fill 1 at 12: no coincidence
    ev = [(0, 1), (5, 2), (8, 3), (12, 2)]
    for mode in ("eta", "exact"):
        r = run(rec, events_file(tmp_path / "e.qt", ev), mode)
        assert r["flags"].tolist() == [0, 1, 0]


def test_image_index_out_of_range_is_an_error(tmp_path):
    rec = recipe(rfile_vi(), vi("img", "CLOCK(c1)\nINTEGER(px)\nHISTOGRAM(img,[(50,1)],[2])\n"
                                "a--1-->a:\n    c1.start()\n"
                                "a--2-->a:\n    c1.stop()\n    img[px].record(c1)\n    px += 1",
                                edges=[("a", "a", "1,2")]))
    ev = [(0, 1), (10, 2), (20, 2), (30, 2)]       # the third stop would write img[2]
    with pytest.raises(ef.RecipeError, match="img: index out of range 0..1"):
        run(rec, events_file(tmp_path / "e.qt", ev), "exact")


def test_last_sync_exact_is_the_decoders_sync_grid():
    """Exact LAST_SYNC = the largest sync time <= T on the grid the T3 decoder assigns
    (np.round(k x period) in float64, so that a photon's last sync is its own sync record),
    checked at and around the sync times themselves, where k = floor(T / period) can be one
    off, for irregular periods up to T ~ 1e15 ps (11 days)."""
    from etaflow.engine.runtime import last_sync
    rng = np.random.default_rng(7)
    for period in (12_512.587663189168, 100_000.0 / 3.0, 1.5, 25_000.000000001):
        def grid(k):
            return int(np.round(np.float64(k) * period))
        for k in [int(x) for x in rng.integers(0, int(1e15 / period), 300)] + [0, 1, 2]:
            for T in (grid(k) - 1, grid(k), grid(k) + 1, grid(k + 1) - 1):
                if T < 0:
                    continue
                want = max(g for g in (grid(k - 1), grid(k), grid(k + 1)) if g <= T)
                assert last_sync(T, int(period), period, True) == want, (period, k, T)


def test_last_sync_eta_is_the_integer_remainder():
    """ETA's LAST_SYNC, T - T % SYNCRate_pspr, computed without a division per event: equal to
    Python's floor remainder for negative times, times near multiples and times up to 2**62."""
    from etaflow.engine.runtime import last_sync
    rng = np.random.default_rng(11)
    for p in (1, 3, 7, 12_512, 100_000, 10**9 + 7, -7):
        ts = [int(x) for x in rng.integers(-10**15, 10**15, 200)] + [2**62, -2**62, 0, -1]
        ts += [m * p + d for m in (0, 1, 5, 10**6, 10**12 // p) for d in (-1, 0, 1)]
        for T in ts:
            assert last_sync(T, p, 0.0, False) == T - T % p, (p, T)
            assert last_sync(T, p, float(p), False) == T - T % p, (p, T)
