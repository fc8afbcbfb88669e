"""etaflow.paneltk, the Script Panel toolkit (ETA's etabackend.tk): ETAResult on whole and growing
files against a single eta.run, save_data and info output formats, the Bokeh live plot."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from etaflow.clip import Clip
from etaflow.eta import ETA
from etaflow.errors import FormatWarning
from etaflow.paneltk import data as tkdata
from etaflow.paneltk import utils as tkutils
from etaflow.sim import simulate_file

from conftest import need, shared_file

RECIPE = "eta-reference/recipes/tests-Correlation.eta"
GROUP = "HHT2"


class Histograms(tkdata.ETAResult):
    """The two one-sided correlation histograms of the test recipe, as two curves."""

    def calculate_result(self, result):
        return np.arange(result["h3"].size), result["h3"], result["h4"]


@pytest.fixture(scope="module")
def ptu(tmp_path_factory):
    path = tmp_path_factory.mktemp("paneltk") / "hbt.ptu"
    return simulate_file(path, kind="hh-t2", duration_s=0.05)


@pytest.fixture(scope="module")
def kernels():
    recipe = shared_file(RECIPE)
    return {mode: ETA(recipe, mode=mode) for mode in ("exact", "eta")}


def _header_size(path) -> int:
    c = Clip()
    c.parse_header(path)
    return c.headeroffset


def _whole_file(eta, path, read_events=10 * 1024 * 1024):
    return eta.run({"timetagger1": eta.clips(path, read_events=read_events)}, group=GROUP)


def _end(clip) -> int:
    """Record index after a Clip's window."""
    return clip.first_record() + clip.records()


def _same(res, ref):
    np.testing.assert_array_equal(res.ydata[0], ref["h3"])
    np.testing.assert_array_equal(res.ydata[1], ref["h4"])


# --- ETAResult --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["exact", "eta"])
@pytest.mark.parametrize("records_per_cut", [None, 7_000])
def test_full_file_equals_one_run(kernels, ptu, mode, records_per_cut):
    eta = kernels[mode]
    ref = _whole_file(eta, ptu, records_per_cut or 10 * 1024 * 1024)
    res = Histograms(ptu, GROUP, records_per_cut=records_per_cut, kernel=eta)
    _same(res, ref)
    assert ref["h3"].sum() > 1000
    np.testing.assert_array_equal(res.xdata, np.arange(ref["h3"].size))
    assert res.max_value == max(ref["h3"].max(), ref["h4"].max())
    assert res.y_max == res.max_value * 1.5 and res.lastupdate > 0
    assert res.vars["binsize"] == "16"            # the group's recipe parameters
    assert res.existing_records == _end(res.cut) > 100_000
    assert res.update() is False                  # nothing new in a finished file


@pytest.mark.parametrize("mode", ["exact", "eta"])
def test_simulated_growth_window_by_window(kernels, ptu, mode):
    eta = kernels[mode]
    per = 20_000
    res = Histograms(ptu, GROUP, records_per_cut=per, kernel=eta, simulate_growth=True)
    windows = 1
    # every step shows exactly the analysis of the records read so far
    partial = eta.run([eta.clip_file(ptu, read_events=per)], group=GROUP)
    _same(res, partial)
    while res.update():
        windows += 1
    assert windows == -(-_end(res.cut) // per)
    _same(res, _whole_file(eta, ptu, per))


def _write_growing(src, dst, pieces, pause_s=0.0, done=None):
    """Write ``src`` to ``dst`` in ``pieces`` (header first), cutting through records."""
    raw = open(src, "rb").read()
    head = _header_size(src)
    cuts = np.linspace(head + 2, len(raw), pieces).astype(int)
    with open(dst, "ab") as f:
        pos = f.tell()
        for cut in cuts:
            f.write(raw[pos:cut])
            f.flush()
            pos = cut
            if pause_s:
                time.sleep(pause_s)
    if done is not None:
        done.set()


@pytest.mark.parametrize("records_per_cut", [None, 5_000])
def test_growing_file_written_by_another_thread(kernels, ptu, tmp_path, records_per_cut):
    eta = kernels["exact"]
    ref = _whole_file(eta, ptu)
    grow = tmp_path / "growing.ptu"
    raw = open(ptu, "rb").read()
    grow.write_bytes(raw[:_header_size(ptu)])             # the header only, no record yet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatWarning)    # header counts more records
        res = Histograms(grow, GROUP, records_per_cut=records_per_cut, kernel=eta, timeout=0.05)
    assert res.ydata[0].sum() == 0 and res.existing_records == 0
    done = threading.Event()
    writer = threading.Thread(target=_write_growing, args=(ptu, grow, 25, 0.01, done))
    writer.start()
    updates = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        finished_before = done.is_set()
        if res.update():
            updates += 1
        elif finished_before:
            break
    writer.join()
    assert updates >= 2
    _same(res, ref)


def test_growing_file_after_a_full_analysis_and_alignment(kernels, ptu, tmp_path):
    """The full analysis stays resumable: data appended later accumulates; alignment mode
    shows the newest window alone."""
    eta = kernels["exact"]
    raw = open(ptu, "rb").read()
    head = _header_size(ptu)
    grow = tmp_path / "later.ptu"
    first = head + 4 * 40_000 + 3                        # ends inside a record
    grow.write_bytes(raw[:first])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatWarning)
        res = Histograms(grow, GROUP, kernel=eta, timeout=0)
        _same(res, eta.run([eta.clip_file(grow)], group=GROUP))
        assert res.update() is False
        second = head + 4 * 80_000
        with open(grow, "ab") as f:
            f.write(raw[first:second])
        assert res.update() is True
        _same(res, eta.run([eta.clip_file(grow)], group=GROUP))
        res.toggle_mode(None)
        assert res.mode == "align"
        with open(grow, "ab") as f:
            f.write(raw[second:])
        assert res.update() is True
        _same(res, eta.run([eta.clip_file(ptu, seek_event=80_000)], group=GROUP))
        res.toggle_mode(None)
        assert res.mode == "accumulation"


def test_headerless_file_with_a_hand_built_clip(kernels, ptu, tmp_path):
    """Correlation-hydraharp-headerless: records without a header, described by a Clip."""
    eta = kernels["exact"]
    parsed = Clip()
    parsed.parse_header(ptu)
    body = tmp_path / "records.bin"
    body.write_bytes(open(ptu, "rb").read()[parsed.headeroffset:])
    clip = Clip()
    clip.TTRes_pspr = parsed.TTRes_pspr
    clip.DTRes_pspr = parsed.DTRes_pspr
    clip.SYNCRate_pspr = parsed.SYNCRate_pspr
    clip.BytesofRecords = parsed.BytesofRecords
    clip.RecordType = parsed.RecordType
    res = Histograms(body, GROUP, kernel=eta, run_immediately=False, modify_clip=clip)
    assert res.update() is True                          # from the very first record
    _same(res, _whole_file(eta, ptu))


def test_missing_parts_are_reported(kernels, ptu):
    with pytest.raises(ValueError, match="kernel=eta"):
        Histograms(ptu, GROUP)
    with pytest.raises(NotImplementedError, match="calculate_result"):
        tkdata.ETAResult(ptu, GROUP, kernel=kernels["exact"])


# --- save_data and info -----------------------------------------------------------------------

def test_info_header_text():
    params = {"file": "/data/run 1/sample.ptu", "binsize": "16", "bins": "10000",
              "HH400_mode": "HHT2", "ch_sel": "t3", "syncs": "20000"}
    base = ("Created with ETA - https://timetag.github.io\nfilename: sample.ptu\n"
            "binsize: 16\nbins: 10000\n")
    assert tkutils.info(params) == base
    assert tkutils.info(params, "Correlation") == base + "mode: HHT2\n"
    assert tkutils.info(params, "lifetime") == base + "mode: t3\n"
    assert tkutils.info(params, "simulation") == base + "syncs: 20000\n"
    assert tkutils.info(params, "countrate") == base
    assert tkutils.info(params, "simple lifetime") == base
    assert tkutils.info({}, "correlation") == (
        "Created with ETA - https://timetag.github.io\nfilename: not available\n"
        "binsize: not available\nbins: not available\nmode: quTAG\n")
    assert tkutils.info(globals_dict={"ch_sel": "t1"}, recipe_type="LIFETIME").endswith(
        "bins: not available\nmode: t1\n")


def test_save_data_numbered_files_and_format(tmp_path):
    x = np.arange(-3, 3, dtype=np.float32) * 16
    y1 = np.array([0, 5, 7, 1, 0, 2], dtype=np.int64)
    y2 = y1 * 3
    header = tkutils.info({"file": "run.ptu", "binsize": 16, "bins": 3}, "correlation")
    out = tmp_path / "analyzed data"
    p0 = tkdata.save_data(x, y1, tmp_path / "run.ptu", out, "correlation", header=header)
    p1 = tkdata.save_data(x, [y1, y2], "elsewhere/run.ptu", out, "correlation", header=header)
    p2 = tkdata.save_data(x, y1, "run.ptu", out, "lifetime")
    assert [p.name for p in (p0, p1, p2)] == ["run_correlation_000.txt", "run_correlation_001.txt",
                                             "run_lifetime_000.txt"]
    # byte for byte what ETA writes: numpy.savetxt of the columns, tab separated
    expected = tmp_path / "expected.txt"
    np.savetxt(expected, np.transpose([x, *np.atleast_2d([y1, y2])]), delimiter="\t",
               header=header)
    assert p1.read_bytes() == expected.read_bytes()
    lines = p0.read_text().splitlines()
    assert lines[:6] == ["# Created with ETA - https://timetag.github.io", "# filename: run.ptu",
                         "# binsize: 16", "# bins: 3", "# mode: quTAG", "# "]
    np.testing.assert_array_equal(np.loadtxt(p0), np.transpose([x, y1]))
    assert not p2.read_text().startswith("#")      # no header given: data only


# --- Bokeh plot -------------------------------------------------------------------------------

def test_toolkit_imports_without_bokeh_and_says_how_to_get_it():
    code = ("import sys; sys.modules['bokeh'] = None\n"
            "import etaflow.paneltk as tk\n"
            "try:\n"
            "    tk.plot.ETABokehPlot(None)\n"
            "except ImportError as e:\n"
            "    print('IMPORTERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTERROR" in out.stdout and "pip install etaflow[gui]" in out.stdout


def test_bokeh_live_plot_document(kernels, ptu, tmp_path):
    need("bokeh", reason="Bokeh is not installed (pip install etaflow[gui])")
    import logging

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.document import Document
    from etaflow.paneltk import plot as tkplot

    eta = kernels["exact"]
    local = tmp_path / "hbt.ptu"
    local.write_bytes(open(ptu, "rb").read())
    res = Histograms(local, GROUP, records_per_cut=25_000, kernel=eta, simulate_growth=True)
    bp = tkplot.ETABokehPlot(res, result_folder="analyzed data", title="Correlation",
                             update_interval=0.01)
    doc = bp.bokeh_plot_document(Document())
    assert len(doc.roots) == 1 and len(bp.sessions) == 1
    ctx = bp.sessions[0]
    np.testing.assert_array_equal(ctx["source"].data["y0"], res.ydata[0])
    assert ctx["plin"].title.text == "Correlation"
    assert ctx["plin"].xaxis[0].axis_label == "Time delay (ps)"
    assert [r.glyph.y for r in ctx["plin"].renderers] == ["y0", "y1"]
    # a served document is built the same way
    assert len(Application(FunctionHandler(bp.bokeh_plot_document)).create_document().roots) == 1
    bp.sessions.pop()

    # lin/log switch swaps the figure above the controls
    ctx["scale"].active = 1
    assert ctx["layout"].children[0].children[0] is ctx["plog"]
    ctx["scale"].active = 0
    assert ctx["layout"].children[0].children[0] is ctx["plin"]

    # Accumulation: a periodic callback and live updates until the display ends
    frontend = logging.getLogger("etaflow.frontend")
    level = frontend.level
    ctx["mode"].active = 1
    assert ctx["callback"] is not None and bp.callback is ctx["callback"]
    stop = threading.Event()
    runner = threading.Thread(target=bp.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 20
    total = res._records_after(res.cut.headeroffset)
    while _end(res.cut) < total and time.monotonic() < deadline:
        time.sleep(0.01)
    ctx["mode"].active = 2                              # Alignment, applied by run()
    time.sleep(0.1)
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
    assert res.mode == "align" and frontend.level == level
    _same(res, _whole_file(eta, local))
    bp._bokeh_update(ctx)
    np.testing.assert_array_equal(ctx["source"].data["y1"], res.ydata[1])
    assert ctx["plin"].y_range.end == pytest.approx(res.max_value * 1.1)
    ctx["mode"].active = 0
    assert ctx["callback"] is None and bp.callback is None

    # Save: numbered file beside the data with the recipe's header
    saved = bp._bokeh_button_savedata_callback()
    assert saved == tmp_path / "analyzed data" / "hbt_Correlation_000.txt"
    text = saved.read_text().splitlines()
    assert text[:5] == ["# Created with ETA - https://timetag.github.io", "# filename: hbt.ptu",
                        "# binsize: 16", "# bins: 10000", "# mode: HHT3"]
    np.testing.assert_array_equal(np.loadtxt(saved)[:, 1], res.ydata[0])


def test_bokeh_plot_histogram_and_labels(tmp_path):
    need("bokeh", reason="Bokeh is not installed (pip install etaflow[gui])")
    from bokeh.document import Document
    from bokeh.events import ButtonClick
    from etaflow.paneltk import plot as tkplot

    table = {"time bins": np.arange(5) * 16.0, "histogram events": np.array([1, 4, 9, 4, 1])}
    layout = tkplot.plot_histogram(table, tmp_path / "f.ptu", tmp_path / "out",
                                   data_name="Correlation", file_label="correlation",
                                   info="hello\n")
    doc = Document()
    doc.add_root(layout)
    save = next(m for m in doc.models if type(m).__name__ == "Button")
    save._trigger_event(ButtonClick(save))              # what a click in the browser does
    saved = tmp_path / "out" / "f_correlation_000.txt"
    assert saved.read_text().startswith("# hello\n")

    class Fake:                                          # any object with ETAResult's fields
        xdata, ydata, lastupdate, file, vars = np.arange(3), [np.ones(3)] * 3, 1.0, "f", {}
    bp = tkplot.ETABokehPlot(Fake(), title="Countrate", line_label="Ch")
    bp.bokeh_plot_document(Document())
    plin = bp.sessions[0]["plin"]
    assert [it.label.value for it in plin.legend[0].items] == ["Ch 0", "Ch 1", "Ch 2"]
    assert plin.xaxis[0].axis_label == "Time delay (min)"
    assert tkplot.ETABokehPlot(Fake(), result_label="histogram").title == "histogram"


# --- ETA's own Script Panels on the toolkit ----------------------------------------------------

@pytest.mark.parametrize("recipe, panel, group, extra", [
    ("Correlation-hydraharp.eta", "display", "T2", {"records_per_cut": ""}),
    ("Correlation.eta", "realtime_bokeh", "HHT2", {"records_per_cut": "30000"}),
    ("Countrate-hydraharp.eta", "display", "hydraharp", {"records_per_cut": ""}),
])
def test_eta_recipe_panels_run_on_the_toolkit(ptu, tmp_path, recipe, panel, group, extra):
    """The realtime Bokeh panels shipped with ETA, unchanged, through etaflow's panel runtime
    (the display is rendered to a file, so the live loop ends at once)."""
    need("bokeh", reason="Bokeh is not installed (pip install etaflow[gui])")
    import logging
    from etaflow.panel import Backend

    path = shared_file(f"eta-reference/recipes/{recipe}")
    params = {"file": ptu, **extra}
    if "HH400_mode" in open(path).read():
        params["HH400_mode"] = group
    quiet = logging.getLogger("bokeh")                   # "standalone HTML with callbacks"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        backend = Backend(output_dir=str(tmp_path))
        g = backend.run_panel(path, panel, group=group, params=params)
    finally:
        quiet.setLevel(level)
    res, eta = g["result"], g["eta"]
    assert backend.displays and len(g["bp"].sessions[0]["doc"].roots) == 1
    if panel == "realtime_bokeh":                        # SIMULATE_GROWTH: the first window only
        ref = eta.run([eta.clip_file(ptu, read_events=30000)], group=group)
    else:
        ref = eta.run({"timetagger1": eta.clips(ptu)}, group=group)
    if recipe.startswith("Countrate"):
        assert len(res.ydata) == 8
        np.testing.assert_array_equal(res.ydata[1], ref["h1"])
    else:
        full = np.concatenate((ref["h4"][::-1], ref["h3"]))
        full[ref["h4"].size] += ref["h4_zero"][0]
        np.testing.assert_array_equal(res.ydata[0], full)
        assert full.sum() > 0
