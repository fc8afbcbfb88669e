"""The Script Panels shipped in ETA's recipes run with `etaflow run`, with `file` set to a
shared data file, and produce their outputs.

Panels that cannot run anywhere but a lab PC (device control, downloads), or whose own code is
broken or needs a package this environment lacks, are listed with the reason; the test asserts
that they fail for exactly that reason, so nothing is skipped silently."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from etaflow.panel import Backend, PanelError

from conftest import shared_file

HH_T2 = "data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres"
QUTAG = "data/qutag/19_qutag_80MHz_HBT_sync_filtered.qutag"

# (recipe, panel) -> data kind; outputs are checked per kind of panel below
RUNS = {
    ("Correlation-hydraharp.eta", "display"): "t2",
    ("Correlation-hydraharp.eta", "save txt"): "t2",
    ("Correlation-qutag.eta", "display"): "qutag",
    ("Correlation-qutag.eta", "save txt"): "qutag",
    ("Correlation.eta", "display (HH400)"): "t2",
    ("Correlation.eta", "create txt (HH400)"): "t2",
    ("Correlation.eta", "create txt (quTAG)"): "qutag",
    ("Countrate-hydraharp.eta", "display"): "t2",
    ("Countrate-hydraharp.eta", "save txt"): "t2",
    ("Countrate-hydraharp.eta", "save graph"): "t2",
    ("Countrate-qutag.eta", "display"): "qutag",
    ("Countrate-qutag.eta", "save txt"): "qutag",
    ("Countrate-qutag.eta", "save graph"): "qutag",
    ("Countrate.eta", "txt_saver"): "t2",
    ("Countrate.eta", "graph_saver"): "t2",
    ("Lifetime.eta", "display"): "t3",
    ("Lifetime.eta", "txt+graph"): "t3",
    ("Lifetime-hydraharp.eta", "display"): "t3",
    ("Lifetime-qutag.eta", "display"): "qutag",
    ("Oscilloscope_QuTAG.eta", "display"): "qutag",
    ("tests-Correlation.eta", "txt 2 graph (zoom-in)"): "t2-txt",
    ("Correlation.eta", "txt 2 graph (zoom-in)"): "t2-txt",
}
# (recipe, panel) -> (exception text that must appear, why)
FAILS = {
    ("tests-Correlation.eta", "create txt (HH400)"): ("name 'hist2' is not defined",
                                                      "the panel's own bug (it assigns t1/t2)"),
    ("tests-Correlation.eta", "create txt (quTAG)"): ("name 'hist2' is not defined",
                                                      "the panel's own bug (it assigns t1/t2)"),
    ("Oscilloscope_QuTAG.eta", "txt+graph"): ("invalid literal for int()",
                                             "int('1e6') in the panel's code"),
    ("Countrate.eta", "display"): ("cannot import name 'Tabs'",
                                   "written for Bokeh 2 (Tabs was removed in Bokeh 3)"),
    ("Two-Time_Correlation.eta", "bokeh"): ("COINCIDENCE flag_name '4' must be a name",
                                            "the recipe's VI does not compile (ETA neither)"),
    ("Oscilloscope_QuTAG.eta", "save_txt"): ("No such file or directory: '.*results",
                                             "it writes into a 'results' folder beside the file "
                                             "and does not create it"),
}
# Dash apps, served (test_eta_dash_panel_is_served_until_shutdown)
DASH = {(r, p): kind for r in ("Correlation.eta", "tests-Correlation.eta")
        for p, kind in (("plotly (HH400)", "t2"), ("plotly (quTAG)", "qutag"))}
# panels not run here, by name fragment, with the reason
NOT_HERE = {
    "start_recording": "drives a device through a vendor DLL (Windows lab PC)",
    "HeaderGenerator": "downloads a LabVIEW tool from the web",
    "realtime": "interactive loops over a growing file (covered by the Realtime recipe tests)",
    "txt 2 g2 analysis": "its pandas code fails on pandas >= 2 (float index slicing by int)",
    "pyplot": "forces matplotlib's TkAgg backend, which needs a display",
}
NEEDS_OTHER_INPUT = {
    ("Multi_Source_Correlation.eta", "display"): "two files (file1, file2)",
    ("Multi_Source_Correlation.eta", "save txt"): "two files (file1, file2)",
    ("Simulation.eta", "display"): "no file; simulates 300 000 syncs (minutes)",
    ("Simulation.eta", "create txt"): "no file; simulates 300 000 syncs (minutes)",
    ("Correlation-hydraharp-headerless.eta", "display"): "a headerless record file",
    ("tests-CheckDelayLineRecipe.eta", "Run test"): "its VI uses chn[0] (does not compile)",
    ("Two-Time_Correlation.eta", "plotly"): "its VI does not compile",
    ("Two-Time_Correlation.eta", "txt and graph saver"): "its VI does not compile",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from etaflow.sim import simulate_file
    d = tmp_path_factory.mktemp("panels")
    return {"t2": shared_file(HH_T2), "qutag": shared_file(QUTAG),
            "t3": pathlib.Path(simulate_file(d / "t3.ptu", kind="hh-t3", duration_s=0.05)),
            "dir": d}


def _copy(src: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """Panels write 'analyzed data' beside their input: give them a private copy."""
    dst = folder / src.name
    if not dst.exists():
        dst.write_bytes(src.read_bytes())
    return dst


@pytest.mark.parametrize("recipe,panel", sorted(RUNS), ids=[f"{r}:{p}" for r, p in sorted(RUNS)])
def test_eta_panel_runs(recipe, panel, data, tmp_path):
    kind = RUNS[(recipe, panel)]
    if (recipe, panel) in FAILS:
        pytest.fail("listed in both RUNS and FAILS")
    if kind == "t2-txt":     # post-processes the txt that "create txt" writes
        f = _copy(data["t2"], tmp_path)
        Backend(output_dir=str(tmp_path / "out")).run_panel(
            shared_file("eta-reference/recipes/Correlation.eta"), "create txt (HH400)",
            params={"file": str(f)})
    else:
        f = _copy(data[kind], tmp_path)
    msgs = []
    b = Backend(msgs.append, output_dir=str(tmp_path / "out"))
    b.run_panel(shared_file("eta-reference/recipes/" + recipe), panel, params={"file": str(f)})
    assert {"op": "finished"} in msgs
    assert not [m for m in msgs if m.get("op") == "err"], msgs
    produced = list(tmp_path.rglob("*"))
    outputs = [p for p in produced if p.is_file() and p != f]
    assert outputs or b.displays, f"{recipe}:{panel} produced nothing"


@pytest.mark.parametrize("recipe,panel", sorted(FAILS), ids=[f"{r}:{p}" for r, p in sorted(FAILS)])
def test_broken_eta_panels_fail_for_their_own_reason(recipe, panel, data, tmp_path):
    text, why = FAILS[(recipe, panel)]
    f = _copy(data["qutag" if "qutag" in recipe.lower() else "t2"], tmp_path)
    with pytest.raises(PanelError, match=text.replace("(", r"\(").replace(")", r"\)")):
        Backend(output_dir=str(tmp_path / "out")).run_panel(
            shared_file("eta-reference/recipes/" + recipe), panel, params={"file": str(f)})


@pytest.mark.parametrize("recipe,panel", sorted(DASH), ids=[f"{r}:{p}" for r, p in sorted(DASH)])
def test_eta_dash_panel_is_served_until_shutdown(recipe, panel, data, tmp_path, monkeypatch):
    """ETA's plotly panels build a Dash app and eta.display it: it is served on ETA_DASHPORT
    with the histogram the panel computed, a second panel is refused while it is served (as in
    ETA), and its /shutdown page stops the server and sets the event eta.display returned."""
    import json
    import socket
    import time
    import urllib.request
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ETA_IP", "127.0.0.1")
    monkeypatch.setenv("ETA_DASHPORT", str(port))
    f = _copy(data[DASH[(recipe, panel)]], tmp_path)
    msgs = []
    b = Backend(msgs.append, output_dir=str(tmp_path / "out"), serve_displays=True)
    path = shared_file("eta-reference/recipes/" + recipe)
    params = {"file": str(f), "HH400_mode": "HHT2"}     # the recipes' default is HHT3
    g = b.run_panel(path, panel, params=params)
    url = f"http://127.0.0.1:{port}"
    assert {"op": "dash", "url-dash": url, "url-shutdown": url + "/shutdown"} in msgs
    assert b.serving() == [url]
    with urllib.request.urlopen(url, timeout=30) as r:
        assert b"<!DOCTYPE html>" in r.read()
    with urllib.request.urlopen(url + "/_dash-layout", timeout=30) as r:
        figure = json.loads(r.read())["props"]["children"][0]["props"]["figure"]
    served = figure["data"][0]["y"]
    assert served == g["fullhist"].tolist() and sum(served) > 1000

    msgs.clear()
    assert b.run_panel(path, panel, params=params) == {}
    assert any("still serving the results" in m.get("msg", "") for m in msgs if m["op"] == "err")

    with urllib.request.urlopen(url + "/shutdown", timeout=30) as r:
        assert r.status == 200
    for _ in range(100):       # once the reply is sent
        if not b.serving():
            break
        time.sleep(0.05)
    assert b.serving() == []
    for _ in range(100):       # the server stops in its own thread
        try:
            urllib.request.urlopen(url, timeout=1).close()
        except OSError:        # refused (or reset while it closed)
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the Dash server still answers after /shutdown")


def test_dash_display_port_errors_are_clear(monkeypatch, tmp_path):
    """A Dash display on a port in use, or with ETA_DASHPORT not a number, is a clear error
    that says what to set (any WSGI application stands in for a Dash app here)."""
    import socket
    from etaflow.errors import EtaflowError

    def wsgi(environ, start_response):
        start_response("200 OK", [])
        return [b""]
    b = Backend(output_dir=str(tmp_path), serve_displays=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("ETA_IP", "127.0.0.1")
        monkeypatch.setenv("ETA_DASHPORT", str(busy.getsockname()[1]))
        with pytest.raises(EtaflowError, match="cannot serve the Dash app.*set ETA_DASHPORT"):
            b.display(wsgi, type="dash")
    monkeypatch.setenv("ETA_DASHPORT", "dash")
    with pytest.raises(EtaflowError, match="ETA_DASHPORT must be a port number, not 'dash'"):
        b.display(wsgi, type="dash")
    assert b.serving() == []


def test_etaflow_run_serve_waits_for_the_dash_shutdown(data, tmp_path):
    """``etaflow run --serve`` keeps a Dash display up until its /shutdown page is opened, then
    exits 0."""
    import os
    import socket
    import urllib.request
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    f = _copy(data["qutag"], tmp_path)
    env = dict(os.environ, ETA_IP="127.0.0.1", ETA_DASHPORT=str(port), PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "etaflow", "run",
                             str(shared_file("eta-reference/recipes/Correlation.eta")),
                             "--panel", "plotly (quTAG)", "--set", f"file={f}", "--serve",
                             "--output", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving"):
                break
        assert url + "\n" in lines, (lines, proc.stderr.read() if proc.poll() else "")
        assert proc.poll() is None          # still serving
        with urllib.request.urlopen(url + "/shutdown", timeout=30) as r:
            assert r.status == 200
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_etaflow_run_cli_on_an_eta_panel(data, tmp_path):
    f = _copy(data["t2"], tmp_path)
    out = subprocess.run([sys.executable, "-m", "etaflow", "run",
                          str(shared_file("eta-reference/recipes/Correlation-hydraharp.eta")),
                          "--panel", "save txt", "--set", f"file={f}", "--output",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.rglob("*.txt"))
    bad = subprocess.run([sys.executable, "-m", "etaflow", "run",
                          str(shared_file("eta-reference/recipes/tests-Correlation.eta")),
                          "--panel", "create txt (HH400)", "--set", f"file={f}"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "hist2" in bad.stderr


def test_every_eta_panel_is_accounted_for():
    """Each panel of ETA's recipes is run, expected to fail for a stated reason, or excluded
    for a stated reason: none is forgotten."""
    import glob
    from etaflow.recipe import Recipe
    seen = []
    for f in sorted(glob.glob(str(shared_file("eta-reference/recipes")) + "/*.eta")):
        name = pathlib.Path(f).name
        try:
            r = Recipe(f)
        except Exception:
            continue
        for p in r.panels():
            key = (name, p.name)
            ok = key in RUNS or key in FAILS or key in NEEDS_OTHER_INPUT or key in DASH or \
                any(frag in p.name for frag in NOT_HERE)
            seen.append((key, ok))
    missing = [k for k, ok in seen if not ok]
    assert not missing, f"panels with no decision: {missing}"
    assert sum(1 for k, _ in seen if k in RUNS) >= 20
