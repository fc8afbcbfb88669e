"""Delay lines (VIs that only copy file channels with emit(v, d), d constant) run without the
queue: their copies are dispatched at once when they win the merge. That must not change a single
event: the whole event sequence (channel and time of every event every VI sees), histograms and
INTEGERs equal the plain merge's, for random streams full of ties, any window size, interrupts,
queued (delayed) emits beside the lines, both modes, and out-of-order files in eta mode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from etaflow.eta import ETA
from etaflow.lang import codegen

from conftest import shared_file
from recipes import events_file, recipe, rfile_vi, vi

LOG = 400

LOGGER = ("TABLE(lc,[{n}])\nTABLE(lt,[{n}])\nINTEGER(k)\n"
          "a--{chans}-->a:\n    {{{{\n        if k < {n}:\n            lc[k] = chn\n"
          "            lt[k] = AbsTime_ps\n        k += 1\n    }}}}")


def _recipe(shape: str):
    if shape == "many":       # 6 sources: the file wins ties against every copy (spec 4.2)
        entries = [
            vi("L1", "a--0-->a:\n    emit(5,0)", edges=[("a", "a", "0")]),
            vi("L2", "a--1,2-->a:\n    emit(6,0)\n    emit(7)", edges=[("a", "a", "1,2")]),
            vi("L3", "a--0-->a:\n    emit(8,3)", edges=[("a", "a", "0")]),    # 3 ps later
            vi("queued", "INTEGER(nq)\na--2-->a:\n    emit(9,2)\n    nq += 1",   # not a line
               edges=[("a", "a", "2")]),
            vi("corr", "CLOCK(c,3,1)\nHISTOGRAM(h,(40,1))\na--5-->a:\n    c.start()\n"
                       "a--6-->a:\n    c.stop()\n    h.record_all(c)", edges=[("a", "a", "5,6")]),
            vi("irq", "INTEGER(m)\na--7-->a:\n    m += 1\n    {{\n        if m % 3 == 0:\n"
                      "            INTERRUPT = 1\n    }}", edges=[("a", "a", "7")]),
            vi("log", LOGGER.format(n=LOG, chans="0,1,2,5,6,7,8,9"),
               edges=[("a", "a", "0,1,2,5,6,7,8,9")]),
        ]
    else:                     # 3 sources as ETA's correlation recipes: copies win ties
        delay = 5 if shape == "three-delayed" else 0
        entries = [
            vi("L1", "a--1-->a:\n    emit(3,0)", edges=[("a", "a", "1")]),
            vi("L2", f"a--2-->a:\n    emit(4,{delay})", edges=[("a", "a", "2")]),
            vi("bwd", "HISTOGRAM(h3,(40,1))\nCLOCK(c3,4,1)\nstart:\n    c3.start()\nstop:\n"
                      "    c3.stop()\n    h3.record_all(c3)",
               states=("start", "stop"), initial="stop",
               edges=[("start", "stop", "3"), ("stop", "start", "4"), ("start", "start", "4"),
                      ("stop", "stop", "3")]),
            vi("two", "CLOCK(c)\nHISTOGRAM(g,(40,1))\nstarted:\n    c.start()\nstopped:\n"
                      "    c.stop()\n    g.record(c)", states=("stopped", "started"),
               edges=[("stopped", "started", "3"), ("started", "stopped", "4"),
                      ("started", "started", "3")]),
            vi("log", LOGGER.format(n=LOG, chans="0,1,2,3,4"), edges=[("a", "a", "0,1,2,3,4")]),
        ]
    return recipe(rfile_vi("RFILE(f,[0,1,2])"), *entries)


def _run(rec, path, mode, window, fuse, monkeypatch):
    monkeypatch.setattr(codegen, "FUSE_LINES", fuse)
    eta = ETA(rec, mode=mode)
    src = eta.program_source()
    assert ("_e_fzt" in src) == fuse      # the lines are (or are not) fused
    r = eta.run({"f": eta.clips(path, read_events=window)})
    return {k: np.asarray(v).copy() for k, v in r.items() if k != "f"}


events = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2)), min_size=1, max_size=60)


@pytest.mark.parametrize("shape", ["many", "three", "three-delayed"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ev=events, window=st.integers(1, 9), mode=st.sampled_from(["eta", "exact"]),
       ordered=st.booleans())
def test_lines_change_no_event(tmp_path, monkeypatch, shape, ev, window, mode, ordered):
    if ordered or mode == "exact":
        ev = sorted(ev, key=lambda e: e[0])    # exact mode sorts anyway; eta keeps file order
    path = events_file(tmp_path / "e.qt", ev)
    rec = _recipe(shape)
    plain = _run(rec, path, mode, window, False, monkeypatch)
    fused = _run(rec, path, mode, window, True, monkeypatch)
    assert plain.keys() == fused.keys()
    for k in plain:
        assert np.array_equal(plain[k], fused[k]), k
    assert int(plain["k"]) > 0


def test_correlation_recipe_is_fused():
    """ETA's own correlation recipe gets the fast path (its two delay lines are fused), and so
    does the Lifetime recipe with non-zero delays."""
    src = ETA(str(shared_file("eta-reference/recipes/tests-Correlation.eta"))).program_source(
        "HHT2")
    assert "_e_fzt3" in src and "_e_fzt4" in src
    assert "_rt.vput(VQ, VQI, 0, _e_lt1, _e_vt" in src    # queued when a copy cannot win
    eta = ETA(str(shared_file("eta-reference/recipes/Lifetime.eta")))
    eta.recipe.set_parameter("fw_delay", "1000", group="compile")
    eta.load_recipe(eta.recipe)
    src = eta.program_source("compile")
    assert "_e_fzt8 = AbsTime_ps + (1000)" in src and "_e_fzt9 = AbsTime_ps + (0)" in src
