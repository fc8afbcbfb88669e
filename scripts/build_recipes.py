"""Write etaflow's bundled recipes (src/etaflow/recipes/*.eta) from the readable sources below.

    .venv/bin/python scripts/build_recipes.py          # rewrite every .eta file
    .venv/bin/python scripts/build_recipes.py --check  # fail if a .eta file is out of date

A recipe is a list of entries: parameters (``param``), Virtual Instruments (``vi``: state
diagram + code panel) and Script Panels (``panel``: Python). The .eta files are ETA's JSON
format (spec 3.1): ``eta_index_table`` (a JSON string: parameters, panels, VIs in that order)
and one key per entry id holding its content. Ids are stable (derived from the entry names), so
a rebuild of unchanged sources gives byte-identical files.

Channel plan of every single-file recipe: RFILE signal channels 0..15, marker channels 16..19
(marker bit k -> 16 + k), virtual channels from 20 up. Parameters are group-scoped and are
substituted into the VI code as text (`name`); Script Panels normalise them before running.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "etaflow" / "recipes"

SIGNALS = list(range(0, 16))
MARKERS = list(range(16, 20))
LAYOUT_GROUPS = "HHT2,HHT3,quTAG"
FLIM_PHOTONS = list(range(0, 8))        # detector channels that make the FLIM image


def chs(channels) -> str:
    return ",".join(str(c) for c in channels)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# --- entries ---------------------------------------------------------------------------------

def param(name, groups, value, info=""):
    return {"kind": "var", "name": name, "group": groups, "config": str(value), "info": info}


def vi(name, groups, code, states=("a",), edges=(), initial=None):
    """``edges``: (from state, to state, channel list) tuples."""
    states = list(states)
    init = initial or states[0]
    nodes = []
    for i, s in enumerate(states):
        n = {"text": s, "x": 120 + 220 * i, "y": 120, "fixed": True}
        if s == init:
            n["initial"] = True
        nodes.append(n)
    es = [{"source": states.index(a), "target": states.index(b), "text": chs(c)}
          for a, b, c in edges]
    graph = {"nodes": nodes, "edges": es, "usercode": textwrap.dedent(code).strip("\n") + "\n"}
    return {"kind": "vi", "name": name, "group": groups, "content": json.dumps(graph, indent=1)}


def panel(name, groups, code, helpers=""):
    """A Script Panel: the shared PRELUDE, optional ``helpers`` code, then ``code``."""
    text = PRELUDE + textwrap.dedent(helpers) + "\n" + textwrap.dedent(code).strip("\n") + "\n"
    compile(text, f"<panel {name}>", "exec")       # a syntax error fails the build
    return {"kind": "dpp", "name": name, "group": groups, "content": text}


def build(entries) -> dict:
    rows, obj = [], {}
    order = {"var": 0, "dpp": 1, "vi": 2}
    seen = set()
    for e in sorted(entries, key=lambda e: order[e["kind"]]):
        base = f"{e['kind']}_{_slug(e['name'])}"
        if e["kind"] == "var":
            base += "_" + _slug(e["group"])
        rid, k = base, 2
        while rid in seen:
            rid, k = f"{base}_{k}", k + 1
        seen.add(rid)
        # ETA classifies entries by substring: a parameter id must not look like a VI or panel
        if e["kind"] == "var":
            assert "vi_" not in rid and "dpp_" not in rid, rid
        elif e["kind"] == "dpp":
            assert "vi_" not in rid, rid
        rows.append({"id": rid, "name": e["name"], "group": e["group"],
                     "info": e.get("info", ""), "config": e.get("config", "")})
        if "content" in e:
            obj[rid] = e["content"]
    obj = {"eta_index_table": json.dumps(rows, indent=1), **obj}
    return obj


# --- the code every panel starts with ----------------------------------------------------------

PRELUDE = '''\
# ---- shared helpers of etaflow's bundled recipes (written by scripts/build_recipes.py) ----
import logging
import math
import os
import pathlib

import numpy as np

import etaflow

logger = logging.getLogger("etabackend.frontend")
GROUP = None          # the group being run; chosen by the panel (use_group, choose_layout)
# until then: the parameters this panel was started with (globals, as ETA passes them)
P = {k: str(globals().get(k, v)) for k, v in eta.recipe.parameters().items()}


def use_group(group):
    """Run ``group``: read its parameters (they include any --set overrides)."""
    global GROUP, P
    if group not in eta.recipe.groups():
        raise ValueError(f"group {group!r} is not in this recipe; groups: "
                         f"{', '.join(eta.recipe.groups())}")
    GROUP = group
    P = eta.recipe.parameters(group)


def text(name):
    return str(P.get(name, "")).strip()


NO_AUTO = object()


def number(name, cast=float, auto=NO_AUTO):
    """A numeric parameter; ``auto`` is returned for an empty value or the word auto."""
    t = text(name)
    if auto is not NO_AUTO and t.lower() in ("", "auto"):
        return auto
    try:
        v = float(t)
    except ValueError:
        raise ValueError(f"parameter {name!r} must be a number, got {t!r}") from None
    if cast is int:
        if v != int(v):
            raise ValueError(f"parameter {name!r} must be a whole number, got {t!r}")
        return int(v)
    return cast(v)


def as_text(v):
    """The exact, shortest text of a number (1000.0 -> '1000', 0.2 -> '0.2')."""
    if isinstance(v, float):
        r = repr(v)
        return r[:-2] if r.endswith(".0") else r
    return str(v)


def set_parameters(**values):
    """Write normalised values back into the recipe (the VI code sees them as text; the same
    text gives the same compiled program, which etaflow caches on disk)."""
    for k, v in values.items():
        eta.recipe.set_parameter(k, as_text(v), GROUP)
    eta.load_recipe(compile=False)
    use_group(GROUP)


def input_file(name="file"):
    f = text(name)
    if not f:
        raise ValueError(f"set the parameter {name!r} to a time-tag file, e.g. "
                         f"etaflow run RECIPE --panel PANEL --set {name}=run.ptu")
    p = pathlib.Path(f).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{name} = {f!r}: no such file")
    return p


def output_dir(source=None):
    """The 'output' parameter, else etaflow run --output, else 'analyzed data' beside the input."""
    out = text("output") or getattr(eta, "output_dir", None) or \\
        getattr(getattr(eta, "_backend", None), "output_dir", None)
    if not out:
        base = pathlib.Path(source).resolve().parent if source else pathlib.Path.cwd()
        out = base / "analyzed data"
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def header_text(**figures):
    lines = [f"etaflow recipe {pathlib.Path(eta.recipe.filename or 'recipe').stem}, "
             f"group {GROUP}, mode {eta.mode}"]
    lines += [f"{k} = {v}" for k, v in P.items()]
    lines += [f"{k} = {v}" for k, v in figures.items()]
    return "\\n".join(lines)


def save_txt(path, columns, names, **figures):
    np.savetxt(path, np.column_stack(columns), delimiter="\\t",
               header=header_text(**figures) + "\\n" + "\\t".join(names),
               fmt="%.10g")
    eta.send(f"saved {path}")
    return path


def plot(path, draw):
    """Save a figure drawn by ``draw(fig)`` when matplotlib is importable; else do nothing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    draw(fig)
    fig.savefig(path, dpi=110)
    eta.send(f"saved {path}")
    try:
        eta.display(fig)
    except Exception as exc:           # a GUI that cannot show it must not fail the analysis
        logger.info(f"display: {exc}")
    return path


LAYOUTS = ("HHT2", "HHT3", "quTAG")
LAYOUT_CHANNELS = {"HHT2": (1, 2), "HHT3": (0, 1), "quTAG": (1, 2)}     # inputs A, B
SYNC_CHANNELS = {"HHT2": 0, "quTAG": 5}       # sync events of T2-style layouts


def layout_for(info):
    """The channel layout (group) that fits a file: where its detector inputs 1 and 2 appear."""
    fmt, mode, dev = info.format, info.mode, (info.device or "")
    if fmt in (etaflow.FORMAT_QT_BINARY, etaflow.FORMAT_QT_RAW, etaflow.FORMAT_QT_COMPRESSED,
               etaflow.FORMAT_SI_16bytes):
        return "quTAG"                       # channels 1, 2 (quTAG sync input 5; Swabian 1..)
    if fmt == etaflow.FORMAT_BH_spc_4bytes:
        return "HHT3"                        # routing channels 0, 1
    if dev.startswith("PicoHarp 300"):
        return "HHT2" if mode == "T3" else "HHT3"    # PicoHarp T3 inputs 1..4, T2 inputs 0..3
    if mode == "T3":
        return "HHT3"                        # HydraHarp family T3: input k -> k-1
    return "HHT2"                            # HydraHarp family T2: sync 0, input k -> k


def choose_layout(info):
    want = text("layout") or "auto"
    if want.lower() == "auto":
        want = layout_for(info)
    if want not in LAYOUTS:
        raise ValueError(f"layout must be auto or one of {', '.join(LAYOUTS)}, not {want!r}")
    use_group(want)
    return want


def sync_period_ps(info):
    """The sync period for side-peak normalisation: the parameter, else a T3 header's."""
    p = number("sync_period", float, auto=0.0) if "sync_period" in P else 0.0
    if p <= 0 and info is not None and info.mode == "T3" and info.sync_period_ps:
        p = float(info.sync_period_ps if eta.mode == "exact" else info.eta_time_unit_ps)
    return p


def two_sided(r, bins, binsize, prefix="g2"):
    """The two-sided histogram: bin j (j = -bins .. bins-1) counts delays in
    [j*binsize, (j+1)*binsize); negative delays come from the reverse VI, delay 0 once."""
    pos = r[prefix + "_pos"].astype(np.int64)
    neg = r[prefix + "_neg"].astype(np.int64)
    hist = np.concatenate([neg[::-1], pos])
    hist[bins] += int(r[prefix + "_zero"][0])
    tau = np.arange(-bins, bins, dtype=np.int64) * binsize
    return tau, hist


def g2_figures(tau, hist, binsize, n_a, n_b, duration_ps, period_ps, zero_window_ps=1000):
    """Coincidences, the Poisson-normalised g2 (g2 = 1 for uncorrelated inputs) and, when the
    pulse period is known, g2(0) from the side peaks: the coincidences within half a period of
    tau = 0 over the mean of the complete side peaks k*period."""
    n_a, n_b = int(n_a), int(n_b)
    f = {"coincidences": int(hist.sum()), "counts A": n_a, "counts B": n_b,
         "duration s": round(duration_ps * 1e-12, 9)}
    norm = n_a * n_b * binsize / duration_ps if duration_ps > 0 else 0.0
    g2 = hist / norm if norm > 0 else np.zeros(len(hist))
    centre = tau + binsize / 2.0
    w = max(float(zero_window_ps), binsize)
    near = np.abs(centre) < w / 2
    if not near.any():
        near = (tau <= 0) & (tau + binsize > 0)
    f[f"coincidences |tau| < {w / 2:g} ps"] = int(hist[near].sum())
    f[f"g2(0) Poisson-normalised, |tau| < {w / 2:g} ps"] = \
        round(float(hist[near].sum() / (norm * near.sum())), 5) if norm > 0 else "n/a"
    if period_ps and period_ps > 0:
        k = np.floor(centre / period_ps + 0.5).astype(np.int64)     # nearest peak
        inside = (k * period_ps - period_ps / 2 >= tau[0]) & \
                 (k * period_ps + period_ps / 2 <= tau[-1] + binsize)
        peaks = {int(kk): int(hist[(k == kk) & inside].sum()) for kk in np.unique(k[inside])}
        side = [v for kk, v in peaks.items() if kk != 0]
        c0 = peaks.get(0, 0)
        f["sync period ps"] = round(float(period_ps), 3)
        f["central peak coincidences"] = c0
        if side and np.mean(side) > 0:
            mean_side = float(np.mean(side))
            f["side peaks used"] = len(side)
            f["mean side peak coincidences"] = round(mean_side, 3)
            f["g2(0) side-peak normalised"] = round(c0 / mean_side, 5)
            f["g2(0) error (Poisson)"] = round(math.sqrt(max(c0, 1)) / mean_side, 5)
        else:
            f["g2(0) side-peak normalised"] = "n/a (no complete side peak with counts in range)"
    return f, g2


def check_ring(r, span_ps, duration_ps):
    """Warn when a correlation clock may have held fewer starts than one histogram range holds
    (on average rate x range; bursts need more): raise max_starts then."""
    keep = number("max_starts", int, auto=10000)
    for name in ("n_a", "n_b"):
        mean = int(r[name]) * span_ps / duration_ps if duration_ps > 0 else 0.0
        if mean > keep / 20:
            logger.warning(f"about {mean:.0f} {name[-1].upper()} events fall in one histogram "
                           f"range on average; a clock keeps max_starts = {keep}: raise it "
                           "(or shorten bins x binsize) so that no pair is missed")


def report(title, figures):
    eta.send(title)
    for k, v in figures.items():
        eta.send(f"  {k}: {v}")
# ---- end of shared helpers ----
'''


# --- building blocks shared by several recipes ---------------------------------------------------

def rfile_vi(groups, name="timetagger", rfile="timetagger"):
    return vi(name, groups, f"""
        # Time-tag source: detector inputs on channels 0..15, marker bit k on channel 16+k.
        RFILE({rfile}, [{chs(SIGNALS)}], [{chs(MARKERS)}])
        """)


LAYOUT_CHANNELS = {"HHT2": (1, 2), "HHT3": (0, 1), "quTAG": (1, 2)}   # inputs A, B
SYNC_CHANNELS = {"HHT2": 0, "quTAG": 5}       # sync events of T2-style layouts


def delay_line_vis(groups, a, b, va=20, vb=21, a_label=None, b_label=None):
    """Copy channel a (b) to virtual channel va (vb): A delayed by `delay` when it is positive,
    B by -`delay` when it is negative, so that the histograms measure tau = tB - tA - delay.
    Channels are fixed per group (a VI reacts to the channels drawn on its diagram; to use
    other inputs, change the transition channel and the emit of these two VIs)."""
    da = vi(f"delay line A ({a_label or f'chn {a}'} -> {va})", groups, f"""
        # Input A: each event is copied to virtual channel {va}, delayed by `delay` if > 0.
        INTEGER(delay_a)
        INTEGER(n_a)
        INTEGER(t_first, -1)
        INTEGER(t_last, -1)
        delay_a = max(0, int(`delay`))
        a--{a}-->a:
            emit({va}, delay_a)
            n_a += 1
            t_last = AbsTime_ps
            {{
                if t_first < 0:
                    t_first = AbsTime_ps
            }}
        """, edges=[("a", "a", [a])])
    db = vi(f"delay line B ({b_label or f'chn {b}'} -> {vb})", groups, f"""
        # Input B: each event is copied to virtual channel {vb}, delayed by -`delay` if > 0.
        INTEGER(delay_b)
        INTEGER(n_b)
        delay_b = max(0, -int(`delay`))
        a--{b}-->a:
            emit({vb}, delay_b)
            n_b += 1
            t_last = AbsTime_ps
            {{
                if t_first < 0:
                    t_first = AbsTime_ps
            }}
        """, edges=[("a", "a", [b])])
    return [da, db]


def g2_vis(groups, va=20, vb=21, ring="`max_starts`", prefix="g2"):
    """Forward (start A, stop B) and reverse (start B, stop A) correlations; the reverse one
    counts delays d > 0 as tau = -d (modifier time-1) and d == 0 in its own one-bin
    histogram, so that every pair is counted exactly once."""
    pos = vi("g2 positive delays (start A, stop B)", groups, f"""
        # tau >= 0: bin k counts t_B - t_A in [k*binsize, (k+1)*binsize).
        HISTOGRAM({prefix}_pos, (`bins`, `binsize`))
        CLOCK(c_pos, {ring}, 1)
        a--{va}-->a:
            c_pos.start()
        a--{vb}-->a:
            c_pos.stop()
            {prefix}_pos.record_all(c_pos)
        """, edges=[("a", "a", [va, vb])])
    neg = vi("g2 negative delays (start B, stop A)", groups, f"""
        # tau < 0: with d = t_A - t_B > 0, bin k counts d in (k*binsize, (k+1)*binsize],
        # i.e. tau in [-(k+1)*binsize, -k*binsize). Pairs with d == 0 whose B copy came first
        # land in {prefix}_zero (the others are in bin 0 of {prefix}_pos).
        HISTOGRAM({prefix}_neg, (`bins`, `binsize`, "time-1"))
        HISTOGRAM({prefix}_zero, (1, 1))
        CLOCK(c_neg, {ring}, 1)
        a--{vb}-->a:
            c_neg.start()
        a--{va}-->a:
            c_neg.stop()
            {prefix}_neg.record_all(c_neg)
            {prefix}_zero.record_all(c_neg)
        """, edges=[("a", "a", [va, vb])])
    return [pos, neg]


def correlation_params():
    g = LAYOUT_GROUPS
    return [
        param("file", g, "", "time-tag file to analyse"),
        param("layout", g, "auto", "auto (from the file) or HHT2 (inputs A, B = channels 1, 2), "
              "HHT3 (channels 0, 1), quTAG (channels 1, 2)"),
        param("bins", g, "10000", "bins on each side of zero delay"),
        param("binsize", g, "16", "bin width, ps"),
        param("delay", g, "0", "delay of B relative to A to remove, ps: tau = tB - tA - delay"),
        param("max_starts", g, "10000", "starts kept per correlation clock (must exceed the "
              "starts in one histogram range)"),
        param("sync_period", g, "auto", "pulse period for side-peak normalisation, ps (auto: "
              "a T3 file's sync period; none for T2)"),
        param("zero_window", g, "1000", "width around tau = 0 of the Poisson-normalised g2(0), ps"),
        param("output", g, "", "folder for results (default: 'analyzed data' beside the file)"),
    ]


def correlation_vis():
    g = LAYOUT_GROUPS
    out = [rfile_vi(g)]
    for group, (a, b) in LAYOUT_CHANNELS.items():
        out += delay_line_vis(group, a, b)
    return out + g2_vis(g)


RUN_CORRELATION = '''
def run_correlation(source, clips):
    bins, binsize = number("bins", int), number("binsize", int)
    if bins <= 0 or binsize <= 0:
        raise ValueError("bins and binsize must be positive")
    set_parameters(bins=bins, binsize=binsize, delay=number("delay", int),
                   max_starts=number("max_starts", int))
    r = eta.run({"timetagger": clips}, group=GROUP)
    tau, hist = two_sided(r, bins, binsize)
    duration = max(int(r["t_last"]) - int(r["t_first"]), 0)
    check_ring(r, bins * binsize, duration)
    return r, tau, hist, duration
'''


# --- 1. Correlation ----------------------------------------------------------------------------

def correlation():
    g2_panel = panel("g2", LAYOUT_GROUPS, helpers=RUN_CORRELATION, code='''
        src = input_file()
        info = etaflow.open_source(src)
        layout = choose_layout(info)
        logger.info(f"g2 of {src.name}: layout {layout}, inputs A, B = channels "
                    f"{LAYOUT_CHANNELS[layout]}")
        r, tau, hist, duration = run_correlation(src, eta.clips(src))
        bins, binsize = number("bins", int), number("binsize", int)
        figures, g2 = g2_figures(tau, hist, binsize, r["n_a"], r["n_b"], duration,
                                 sync_period_ps(info), number("zero_window", float))
        report(f"g2 of {src.name} (layout {layout}: A, B = channels {LAYOUT_CHANNELS[layout]}; "
               f"tau = tB - tA - {text('delay')} ps, "
               f"{bins} bins of {binsize} ps each side)", figures)
        out = output_dir(src)
        stem = f"{src.stem}_g2"
        save_txt(out / f"{stem}.txt", [tau, hist, g2],
                 ["tau_ps(bin start)", "coincidences", "g2_poisson"], **figures)

        def draw(fig):
            ax = fig.add_subplot()
            ax.step(tau * 1e-3, hist, where="post", lw=0.8)
            ax.set_xlabel("tau = tB - tA (ns)")
            ax.set_ylabel("coincidences")
            ax.set_title(f"g2: {src.name}")
        plot(out / f"{stem}.png", draw)
        result = {"tau_ps": tau, "coincidences": hist, "g2": g2, "figures": figures}
        ''')
    return build([*correlation_params(), g2_panel, *correlation_vis()])


# --- 2. Lifetime -------------------------------------------------------------------------------

def lifetime():
    g = "T3"
    entries = [
        param("file", g, "", "T3 time-tag file (PicoQuant T3, Becker & Hickl)"),
        param("bins", g, "4096", "histogram bins (micro-time bins after binning)"),
        param("binning", g, "1", "micro-time bins per histogram bin"),
        param("dtime_ps", g, "auto", "micro-time bin width, ps (auto: from the file header; "
              "set it when running the group yourself)"),
        param("output", g, "", "folder for results (default: 'analyzed data' beside the file)"),
        rfile_vi(g),
        vi("lifetime per channel", g, """
            # Arrival time after the last sync, per input channel 0..15: the clock stops at the
            # photon and starts at the sync before it (LAST_SYNC), so its interval is the
            # micro time; the modifier turns ps back into micro-time bins (exact for
            # non-integer bin widths), then `binning` bins are merged.
            CLOCK(c)
            HISTOGRAM(lifetime, [(`bins`, `binning`, "np.int64(np.round(time/`dtime_ps`))")], [16])
            a:
                c.stop()
                c.start(LAST_SYNC)
                lifetime[chn].record(c)
            """, edges=[("a", "a", SIGNALS)]),
        panel("lifetime", g, '''
            use_group("T3")
            src = input_file()
            info = etaflow.open_source(src)
            if info.mode != "T3":
                raise ValueError(f"{src.name} is a {info.mode or 'time-tag'} file: the lifetime "
                                 "recipe needs T3 data (a sync period and micro times)")
            dt = info.dtime_unit_ps if eta.mode == "exact" else float(info.eta_dtime_unit_ps)
            dt = number("dtime_ps", float, auto=dt)
            bins, binning = number("bins", int), number("binning", int)
            if bins <= 0 or binning <= 0:
                raise ValueError("bins and binning must be positive")
            set_parameters(dtime_ps=float(dt), bins=bins, binning=binning)
            r = eta.run({"timetagger": eta.clips(src)}, group=GROUP)
            hist = r["lifetime"]
            width = dt * binning
            t_ps = np.arange(bins) * width
            used = [k for k in range(hist.shape[0]) if hist[k].sum() > 0]
            eta.send(f"lifetime of {src.name}: micro-time bin {dt:.6g} ps, histogram bin "
                     f"{width:.6g} ps, sync period {info.sync_period_ps:.6g} ps")
            figures = {}
            for k in used:
                h = hist[k].astype(float)
                n = int(h.sum())
                peak = int(np.argmax(h))
                mean = float((h * (t_ps + width / 2)).sum() / n)
                # tail fit: log-linear least squares from the peak down to 1 % of it
                tail = np.arange(peak, bins)
                tail = tail[h[tail] >= max(h[peak] * 0.01, 1)]
                tau = float("nan")
                if len(tail) >= 3:
                    slope = np.polyfit(t_ps[tail], np.log(h[tail]), 1, w=np.sqrt(h[tail]))[0]
                    tau = -1.0 / slope if slope < 0 else float("nan")
                figures[f"chn {k} counts"] = n
                figures[f"chn {k} peak ns"] = round(t_ps[peak] * 1e-3, 4)
                figures[f"chn {k} mean arrival ns"] = round(mean * 1e-3, 4)
                figures[f"chn {k} tail-fit lifetime ns"] = round(tau * 1e-3, 4)
            report("per channel:", figures)
            out = output_dir(src)
            stem = f"{src.stem}_lifetime"
            # rows up to the sync period (or the last count, if later)
            nz = np.nonzero(hist.sum(0))[0]
            last = int(nz[-1]) + 1 if len(nz) else 1
            rows = max(int(math.ceil(info.sync_period_ps / width)), last)
            rows = min(rows, bins)
            save_txt(out / f"{stem}.txt", [t_ps[:rows]] + [hist[k][:rows] for k in used],
                     ["arrival_ps(bin start)"] + [f"chn{k}" for k in used], **figures)

            def draw(fig):
                ax = fig.add_subplot()
                for k in used:
                    ax.semilogy(t_ps * 1e-3, np.clip(hist[k], 0.5, None), lw=0.8,
                                label=f"chn {k}")
                ax.set_xlabel("arrival time after sync (ns)")
                ax.set_ylabel("counts")
                ax.legend()
            plot(out / f"{stem}.png", draw)
            result = {"arrival_ps": t_ps, "lifetime": hist, "figures": figures}
            '''),
    ]
    return build(entries)


# --- 3. Countrate ------------------------------------------------------------------------------

def countrate():
    g = "countrate"
    every = SIGNALS + MARKERS
    entries = [
        param("file", g, "", "time-tag file"),
        param("bins", g, "36000", "number of time bins"),
        param("binsize", g, "1e11", "time bin, ps (1e11 = 0.1 s)"),
        param("output", g, "", "folder for results (default: 'analyzed data' beside the file)"),
        rfile_vi(g),
        vi("countrate per channel", g, """
            # Counts per time bin for every channel (inputs 0..15, markers 16..19), timed from
            # the first event of the file (whatever its channel).
            CLOCK(c)
            INTEGER(t_first)
            INTEGER(t_last)
            HISTOGRAM(counts, [(`bins`, `binsize`)], [20])
            beginning--%(every)s-->a:
                c.start()
                t_first = AbsTime_ps
            a:
                c.stop()
                counts[chn].record(c)
                t_last = AbsTime_ps
            """ % {"every": chs(every)}, states=("beginning", "a"),
           edges=[("beginning", "a", every), ("a", "a", every)]),
        panel("countrate", g, '''
            use_group("countrate")
            src = input_file()
            bins, binsize = number("bins", int), number("binsize", int)
            if bins <= 0 or binsize <= 0:
                raise ValueError("bins and binsize must be positive")
            set_parameters(bins=bins, binsize=binsize)
            r = eta.run({"timetagger": eta.clips(src)}, group=GROUP)
            counts = r["counts"]
            duration = int(r["t_last"]) - int(r["t_first"])
            used = [k for k in range(counts.shape[0]) if counts[k].sum() > 0]
            nbins = min(bins, duration // binsize + 1)      # bins the measurement reached
            t_s = np.arange(nbins) * binsize * 1e-12
            rate = counts[:, :nbins] / (binsize * 1e-12)
            figures = {"duration s": duration * 1e-12, "time bins used": nbins}
            if duration >= bins * binsize:
                figures["warning"] = (f"the measurement ({duration * 1e-12:.4g} s) is longer than "
                                      f"bins x binsize; later events are not counted")
            for k in used:
                name = f"marker {k - 16}" if k >= 16 else f"chn {k}"
                n = int(counts[k].sum())
                figures[f"{name} counts"] = n
                figures[f"{name} mean rate Hz"] = round(n / (duration * 1e-12), 3) \\
                    if duration > 0 else "n/a"
                full = rate[k][:-1] if nbins > 1 else rate[k]     # the last bin is partial
                figures[f"{name} min..max rate per bin Hz"] = \\
                    f"{full.min():.6g} .. {full.max():.6g}"
            report(f"count rates of {src.name} ({binsize * 1e-12:.6g} s bins):", figures)
            out = output_dir(src)
            stem = f"{src.stem}_countrate"
            save_txt(out / f"{stem}.txt", [t_s] + [rate[k] for k in used],
                     ["time_s(bin start)"] + [f"{'marker' if k >= 16 else 'chn'}"
                                              f"{k - 16 if k >= 16 else k}_Hz" for k in used],
                     **figures)

            def draw(fig):
                ax = fig.add_subplot()
                for k in used:
                    ax.step(t_s, rate[k], where="post", lw=0.8, label=f"channel {k}")
                ax.set_xlabel("time since the first event (s)")
                ax.set_ylabel("count rate (Hz)")
                ax.legend()
            plot(out / f"{stem}.png", draw)
            result = {"time_s": t_s, "rate_hz": rate, "counts": counts, "figures": figures}
            '''),
    ]
    return build(entries)


# --- 4. Two-time correlation ---------------------------------------------------------------------

def _photon_code(me, other, t3):
    """Embedded code of one photon of the two-time correlation (me/other: 'a' or 'b')."""
    first, second = ("k", "cycle_b[j]") if me == "a" else ("cycle_a[j]", "k")
    new_cycle = """
            if c_start_rec != ref:
                ref = c_start_rec
                n_a = 0
                n_b = 0
                cycles += 1""" if t3 else ""
    return f"""
        {{{new_cycle}
            photons_{me} += 1
            if ref >= 0:
                k = (AbsTime_ps - ref) // `binsize`
                if k >= `bins`:
                    k = -1
                for j in range(n_{other}):
                    if k >= 0 and cycle_{other}[j] >= 0:
                        two_time[{first}, {second}] += 1
                        pairs += 1
                    else:
                        pairs_outside += 1
                if n_{me} < `max_per_sync`:
                    cycle_{me}[n_{me}] = k
                    n_{me} += 1
                else:
                    overflow += 1
        }}"""


def two_time_vi(group):
    a, b = LAYOUT_CHANNELS[group]
    sync = SYNC_CHANNELS.get(group)
    t3 = sync is None
    clock = "\n            c.stop()\n            c.start(LAST_SYNC)" if t3 else ""
    where = ("the sync before the photon (LAST_SYNC: T3 data)" if t3 else
             f"the last sync event (channel {sync})")
    code = f"""
        # Joint arrival times of the photon pairs of one excitation cycle: every pair of an A
        # photon (chn {a}) and a B photon (chn {b}) after the same sync is counted once, in
        # two_time[(tA - sync) // binsize, (tB - sync) // binsize]. The sync is {where}.
        # The arrival bins of the current cycle are kept per channel (cycle_a, cycle_b).
        TABLE(two_time, [`bins`, `bins`])
        TABLE(cycle_a, [`max_per_sync`])
        TABLE(cycle_b, [`max_per_sync`])
        INTEGER(n_a)
        INTEGER(n_b)
        INTEGER(ref, -1)
        INTEGER(cycles)
        INTEGER(photons_a)
        INTEGER(photons_b)
        INTEGER(pairs)
        INTEGER(pairs_outside)
        INTEGER(overflow)
        {"CLOCK(c)" if t3 else ""}
        a--{a}-->a:{clock}{textwrap.indent(_photon_code("a", "b", t3), "    ")}
        a--{b}-->a:{clock}{textwrap.indent(_photon_code("b", "a", t3), "    ")}
        """
    chans = [a, b]
    if not t3:
        code += f"""
        a--{sync}-->a:
            {{
                ref = AbsTime_ps
                n_a = 0
                n_b = 0
                cycles += 1
            }}
        """
        chans.append(sync)
    return vi(f"two-time correlation ({group})", group, code, edges=[("a", "a", chans)])


def two_time():
    g = LAYOUT_GROUPS
    entries = [
        param("file", g, "", "time-tag file"),
        param("layout", g, "auto", "auto (from the file) or HHT2 (sync 0, A 1, B 2), HHT3 (T3: "
              "A 0, B 1), quTAG (sync 5, A 1, B 2)"),
        param("bins", g, "64", "bins per axis"),
        param("binsize", g, "200", "bin width, ps"),
        param("max_per_sync", g, "64", "photons of one channel kept per sync period"),
        param("output", g, "", "folder for results (default: 'analyzed data' beside the file)"),
        rfile_vi(g),
        *[two_time_vi(group) for group in LAYOUT_CHANNELS],
        panel("two-time", g, '''
            src = input_file()
            info = etaflow.open_source(src)
            layout = choose_layout(info)
            sync_ch = SYNC_CHANNELS.get(layout, -1)
            if sync_ch < 0 and info.mode != "T3":
                raise ValueError(f"{src.name} has no sync period ({info.mode or 'no'} mode): the "
                                 "HHT3 layout needs T3 data; use a layout with a sync channel")
            bins, binsize = number("bins", int), number("binsize", int)
            if bins <= 0 or binsize <= 0:
                raise ValueError("bins and binsize must be positive")
            set_parameters(bins=bins, binsize=binsize, max_per_sync=number("max_per_sync", int))
            r = eta.run({"timetagger": eta.clips(src)}, group=GROUP)
            h = r["two_time"]
            edges = np.arange(bins) * binsize
            figures = {"sync cycles with photons" if sync_ch < 0 else "sync events":
                       int(r["cycles"]),
                       "photons A": int(r["photons_a"]), "photons B": int(r["photons_b"]),
                       "pairs in the histogram": int(r["pairs"]),
                       "pairs outside the range": int(r["pairs_outside"]),
                       "photons beyond max_per_sync": int(r["overflow"])}
            if h.sum():
                ia, ib = np.unravel_index(int(np.argmax(h)), h.shape)
                figures["most frequent (tA, tB) ps"] = (int(edges[ia]), int(edges[ib]))
                figures["mean tA ps"] = round(float((h.sum(1) * (edges + binsize / 2)).sum()
                                                    / h.sum()), 1)
                figures["mean tB ps"] = round(float((h.sum(0) * (edges + binsize / 2)).sum()
                                                    / h.sum()), 1)
            if int(r["overflow"]):
                logger.warning(f"{int(r['overflow'])} photons did not fit in max_per_sync")
            a, b = LAYOUT_CHANNELS[layout]
            report(f"two-time correlation of {src.name} (layout {layout}: A = chn {a}, B = chn "
                   f"{b}, sync = " + (f"chn {sync_ch}" if sync_ch >= 0 else "T3 sync") +
                   f"; {bins}x{bins} bins of {binsize} ps)", figures)
            out = output_dir(src)
            stem = f"{src.stem}_two_time"
            np.savetxt(out / f"{stem}.txt", h, fmt="%d", delimiter="\\t",
                       header=header_text(**figures) + "\\nrows: tA bins, columns: tB bins, "
                       f"bin k starts at k*{binsize} ps after the sync")
            eta.send(f"saved {out / (stem + '.txt')}")

            def draw(fig):
                ax = fig.add_subplot()
                im = ax.imshow(h.T, origin="lower", aspect="equal",
                               extent=[0, bins * binsize * 1e-3, 0, bins * binsize * 1e-3])
                ax.set_xlabel("tA after sync (ns)")
                ax.set_ylabel("tB after sync (ns)")
                fig.colorbar(im, ax=ax, label="pairs")
            plot(out / f"{stem}.png", draw)
            result = {"two_time": h, "bin_start_ps": edges, "figures": figures}
            '''),
    ]
    return build(entries)


# --- 5. Simulation -----------------------------------------------------------------------------

def simulation():
    g = "simulation"
    A, B = 4, 5
    entries = [
        param("syncs", g, "20000", "excitation pulses to simulate"),
        param("period", g, "12500", "pulse period, ps"),
        param("emission_prob", g, "0.2", "probability that a pulse makes a photon (at most one: "
              "a single emitter)"),
        param("lifetime", g, "1000", "emitter lifetime, ps (exponential delay)"),
        param("efficiency", g, "0.5", "detection probability of a photon (split 50:50)"),
        param("dark_prob", g, "0.0002", "probability per pulse and detector of a dark count"),
        param("seed", g, "1", "random seed (numba's np.random.seed); -1: not seeded"),
        param("bins", g, "2000", "g2 bins on each side of zero delay"),
        param("binsize", g, "16", "bin width, ps"),
        param("lifetime_bins", g, "1000", "bins of the arrival-time histogram"),
        param("max_log", g, "100000", "detections kept in the event log (det_t, det_c)"),
        param("max_starts", g, "10000", "starts kept per correlation clock"),
        param("output", g, "", "folder for results (default: 'analyzed data' in the "
              "current folder)"),
        vi("pulsed laser (self-sustaining clock)", g, """
            # Virtual channel 1 is the laser: the first pulse is emitted before the first event,
            # each pulse emits the next one `period` ps later until `syncs` pulses were made;
            # the last one schedules the end (channel 2) 100 periods later, so every photon is
            # delivered, and the end aborts the run.
            INTEGER(n_sync)
            INTEGER(more)
            INTEGER(finished)
            INTEGER(seed, `seed`)
            {
                if seed >= 0:
                    np.random.seed(seed)
            }
            emit(1, 0)
            a--1-->a:
                n_sync += 1
                {
                    more = 1 if n_sync < `syncs` else 0
                    finished = 1 - more
                }
                emit(1, `period`, 0, more)
                emit(2, `period` * 100, 0, finished)
            done:
                abort()
            """, states=("a", "done"), edges=[("a", "a", [1]), ("a", "done", [2])]),
        vi("single emitter, beam splitter and detectors", g, f"""
            # Each pulse makes at most one photon (probability emission_prob), emitted after an
            # exponential delay (lifetime); a 50:50 beam splitter and two detectors of
            # efficiency `efficiency` detect it on A (channel {A}) or B (channel {B}), or lose it.
            # Dark counts: a detector that saw no photon in a pulse period fires with
            # probability dark_prob, at a uniformly random time in the period.
            INTEGER(emission_delay)
            INTEGER(det_a)
            INTEGER(det_b)
            INTEGER(delay_a)
            INTEGER(delay_b)
            INTEGER(n_photon)
            INTEGER(n_det_a)
            INTEGER(n_det_b)
            INTEGER(n_lost)
            INTEGER(n_dark_a)
            INTEGER(n_dark_b)
            a--1-->a:
                {{
                    emitted = np.random.random() < `emission_prob`
                    emission_delay = np.int64(np.round(np.random.exponential(`lifetime`)))
                    u = np.random.random()
                    det_a = 1 if emitted and u < `efficiency` / 2 else 0
                    det_b = 1 if emitted and u >= `efficiency` / 2 and u < `efficiency` else 0
                    n_photon += 1 if emitted else 0
                    n_det_a += det_a
                    n_det_b += det_b
                    n_lost += (1 if emitted else 0) - det_a - det_b
                    delay_a = emission_delay
                    delay_b = emission_delay
                    if det_a == 0 and np.random.random() < `dark_prob`:
                        det_a = 1
                        delay_a = np.int64(np.random.random() * `period`)
                        n_dark_a += 1
                    if det_b == 0 and np.random.random() < `dark_prob`:
                        det_b = 1
                        delay_b = np.int64(np.random.random() * `period`)
                        n_dark_b += 1
                }}
                emit({A}, delay_a, 0, det_a)
                emit({B}, delay_b, 0, det_b)
            """, edges=[("a", "a", [1])]),
        vi("detection log and arrival times", g, f"""
            # Every detection: its time after the last pulse (histogram arrival) and, for
            # the first max_log detections, its time and channel (det_t, det_c).
            CLOCK(cl)
            HISTOGRAM(arrival, (`lifetime_bins`, `binsize`))
            TABLE(det_t, [`max_log`])
            TABLE(det_c, [`max_log`])
            INTEGER(n_log)
            a--1-->a:
                cl.start()
            a--{A},{B}-->a:
                cl.stop()
                arrival.record(cl)
                {{
                    if n_log < `max_log`:
                        det_t[n_log] = AbsTime_ps
                        det_c[n_log] = chn
                    n_log += 1
                }}
            """, edges=[("a", "a", [1, A, B])]),
        *g2_vis(g, va=A, vb=B),
        panel("simulate", g, '''
            use_group("simulation")
            ints = {k: number(k, int) for k in ("syncs", "period", "bins", "binsize",
                                                  "lifetime_bins", "max_log", "seed")}
            floats = {k: number(k, float) for k in ("emission_prob", "lifetime", "efficiency",
                                                    "dark_prob")}
            set_parameters(max_starts=number("max_starts", int), **ints, **floats)
            r = eta.run(None, group=GROUP, stop_with_source=False)
            bins, binsize = ints["bins"], ints["binsize"]
            tau, hist = two_sided(r, bins, binsize)
            n_a = int(r["n_det_a"]) + int(r["n_dark_a"])
            n_b = int(r["n_det_b"]) + int(r["n_dark_b"])
            duration = ints["syncs"] * ints["period"]
            figures = {"pulses": int(r["n_sync"]), "photons": int(r["n_photon"]),
                       "detected A": int(r["n_det_a"]), "detected B": int(r["n_det_b"]),
                       "lost": int(r["n_lost"]), "dark A": int(r["n_dark_a"]),
                       "dark B": int(r["n_dark_b"])}
            g2f, g2 = g2_figures(tau, hist, binsize, n_a, n_b, duration, ints["period"])
            figures.update(g2f)
            arr = r["arrival"]
            if arr.sum():
                centre = (np.arange(len(arr)) + 0.5) * binsize
                figures["mean arrival after pulse ps"] = round(float((arr * centre).sum()
                                                                     / arr.sum()), 1)
            report(f"simulation: {ints['syncs']} pulses, seed {ints['seed']}", figures)
            out = output_dir(None)
            stem = f"simulation_seed{ints['seed']}"
            save_txt(out / f"{stem}_g2.txt", [tau, hist], ["tau_ps(bin start)", "coincidences"],
                     **figures)

            def draw(fig):
                ax = fig.add_subplot()
                ax.step(tau * 1e-3, hist, where="post", lw=0.8)
                ax.set_xlabel("tau = tB - tA (ns)")
                ax.set_ylabel("coincidences")
                ax.set_title("simulated single emitter")
            plot(out / f"{stem}_g2.png", draw)
            result = {"tau_ps": tau, "coincidences": hist, "figures": figures, "results": r}
            '''),
    ]
    return build(entries)


# --- 6. Multi-source correlation ------------------------------------------------------------------

def multi_source():
    g = "two_files"
    s1, s2 = list(range(0, 16)), list(range(20, 36))
    m1, m2 = [16, 17, 18, 19], [36, 37, 38, 39]
    entries = [
        param("file1", g, "", "first time-tag file (input A)"),
        param("file2", g, "", "second time-tag file (input B); any format"),
        param("shift", g, "0", "ps added to every time of file2 (GlobalTimeShift of its Clips)"),
        param("bins", g, "10000", "bins on each side of zero delay"),
        param("binsize", g, "16", "bin width, ps"),
        param("delay", g, "0", "further delay of B relative to A to remove, ps"),
        param("max_starts", g, "10000", "starts kept per correlation clock"),
        param("sync_period", g, "auto", "pulse period for side-peak normalisation, ps "
              "(auto: file1's T3 sync period)"),
        param("zero_window", g, "1000", "width around tau = 0 of the Poisson-normalised g2(0), ps"),
        param("output", g, "", "folder for results (default: 'analyzed data' beside file1)"),
        vi("two sources", g, f"""
            # Two files merged in time order: file1 on channels 0..19, file2 on 20..39
            # (its channel k is 20 + k). Each keeps its own time base; file2's Clips carry the
            # GlobalTimeShift `shift`.
            RFILE(source1, [{chs(s1)}], [{chs(m1)}])
            RFILE(source2, [{chs(s2)}], [{chs(m2)}])
            """),
        *delay_line_vis(g, 1, 21, va=40, vb=41, a_label="file1 chn 1",
                        b_label="file2 chn 1 = 21"),
        *g2_vis(g, va=40, vb=41),
        panel("cross-correlation", g, '''
            use_group("two_files")
            f1, f2 = input_file("file1"), input_file("file2")
            shift = number("shift", int)
            bins, binsize = number("bins", int), number("binsize", int)
            if bins <= 0 or binsize <= 0:
                raise ValueError("bins and binsize must be positive")
            set_parameters(bins=bins, binsize=binsize, delay=number("delay", int), shift=shift,
                           max_starts=number("max_starts", int))

            def shifted(clips):
                for clip in clips:
                    clip.GlobalTimeShift = shift
                    yield clip
            r = eta.run({"source1": eta.clips(f1), "source2": shifted(eta.clips(f2))},
                        group=GROUP)
            tau, hist = two_sided(r, bins, binsize)
            duration = max(int(r["t_last"]) - int(r["t_first"]), 0)
            check_ring(r, bins * binsize, duration)
            info = etaflow.open_source(f1)
            figures, g2 = g2_figures(tau, hist, binsize, r["n_a"], r["n_b"], duration,
                                     sync_period_ps(info), number("zero_window", float))
            report(f"cross-correlation of {f1.name} chn 1 (A) and {f2.name} chn 1 (B), file2 "
                   f"shifted by {shift} ps", figures)
            out = output_dir(f1)
            stem = f"{f1.stem}_x_{f2.stem}_g2"
            save_txt(out / f"{stem}.txt", [tau, hist, g2],
                     ["tau_ps(bin start)", "coincidences", "g2_poisson"], **figures)

            def draw(fig):
                ax = fig.add_subplot()
                ax.step(tau * 1e-3, hist, where="post", lw=0.8)
                ax.set_xlabel("tau = tB + shift - tA (ns)")
                ax.set_ylabel("coincidences")
            plot(out / f"{stem}.png", draw)
            result = {"tau_ps": tau, "coincidences": hist, "g2": g2, "figures": figures}
            '''),
    ]
    return build(entries)


# --- 7. Realtime -------------------------------------------------------------------------------

def realtime():
    g = LAYOUT_GROUPS
    entries = [
        *correlation_params(),
        param("mode", g, "accumulate", "accumulate (all data so far) or align (each update "
              "alone, for aligning a set-up)"),
        param("records_per_update", g, "1e6", "records read per update at most"),
        param("interval", g, "1", "seconds to wait for new records per update"),
        param("idle_timeout", g, "10", "stop when the file has not grown for this many seconds"),
        *correlation_vis(),
        panel("realtime", g, helpers=RUN_CORRELATION, code='''
            import time
            import warnings
            # a file that is still being written is shorter than its header says: expected here
            warnings.simplefilter("ignore", etaflow.FormatWarning)
            src = pathlib.Path(text("file")).expanduser()
            if not text("file"):
                input_file()            # raises: says how to set it
            idle = number("idle_timeout", float)
            interval = number("interval", float)
            per_update = number("records_per_update", int)
            mode = text("mode").lower() or "accumulate"
            if mode not in ("accumulate", "align"):
                raise ValueError(f"mode must be accumulate or align, not {mode!r}")
            waited = 0.0
            while not src.exists():                 # the acquisition may not have started
                if waited > idle:
                    raise FileNotFoundError(f"{src} did not appear within {idle} s")
                time.sleep(0.05)
                waited += 0.05
            info = None
            while info is None:
                try:
                    info = etaflow.open_source(src)
                except Exception:
                    if waited > idle:
                        raise
                    time.sleep(0.05)
                    waited += 0.05
            layout = choose_layout(info)
            bins, binsize = number("bins", int), number("binsize", int)
            set_parameters(bins=bins, binsize=binsize, delay=number("delay", int),
                           max_starts=number("max_starts", int))
            eta.send(f"realtime g2 of {src} ({mode}, layout {layout}); stops after {idle} s "
                     "without new records")
            task, clip, previous = None, None, None
            updates, last_growth = 0, time.monotonic()
            while True:
                # ETA's pattern: the last window's Clip is refilled with the records after it
                nxt = eta.clip_file(src, modify_clip=clip, read_events=per_update,
                                    wait_timeout=interval)
                if not nxt:
                    if time.monotonic() - last_growth > idle:
                        break
                    time.sleep(min(interval, 0.05))
                    continue
                clip, last_growth = nxt, time.monotonic()
                r, task = eta.run({"timetagger": [clip]}, resume_task=task, group=GROUP,
                                  return_task=True, max_autofeed=1)
                updates += 1
                tau, hist = two_sided(r, bins, binsize)
                shown = hist if mode == "accumulate" or previous is None else hist - previous
                previous = hist
                zero = int(np.searchsorted(tau, 0, side="right") - 1)
                eta.send(f"update {updates}: records {clip.first_record() + clip.records()}, "
                         f"coincidences "
                         f"{int(shown.sum())}, at tau=0 {int(shown[zero])}"
                         + (" (this update)" if mode == "align" else " (all so far)"))
            # the file stopped growing: deliver what is still held back and finish the task
            if task is None:
                raise ValueError(f"{src} holds no records")
            r = eta.run({"timetagger": []}, resume_task=task, group=GROUP)
            tau, hist = two_sided(r, bins, binsize)
            duration = max(int(r["t_last"]) - int(r["t_first"]), 0)
            check_ring(r, bins * binsize, duration)
            figures, g2 = g2_figures(tau, hist, binsize, r["n_a"], r["n_b"], duration,
                                     sync_period_ps(info), number("zero_window", float))
            figures["updates"] = updates
            report(f"realtime g2 of {src.name}: the file stopped growing", figures)
            out = output_dir(src)
            stem = f"{src.stem}_realtime_g2"
            save_txt(out / f"{stem}.txt", [tau, hist, g2],
                     ["tau_ps(bin start)", "coincidences", "g2_poisson"], **figures)

            def draw(fig):
                ax = fig.add_subplot()
                ax.step(tau * 1e-3, hist, where="post", lw=0.8)
                ax.set_xlabel("tau = tB - tA (ns)")
                ax.set_ylabel("coincidences")
            plot(out / f"{stem}.png", draw)
            result = {"tau_ps": tau, "coincidences": hist, "g2": g2, "figures": figures}
            '''),
    ]
    return build(entries)


# --- 8. FLIM -----------------------------------------------------------------------------------

def flim():
    g = "T3"
    entries = [
        param("file", g, "", "T3 file with line/frame markers (PicoQuant PTU image)"),
        param("pix_x", g, "auto", "pixels per line (auto: header ImgHdr_PixX)"),
        param("pix_y", g, "auto", "lines per frame (auto: header ImgHdr_PixY)"),
        param("line_start", g, "auto", "marker number of a line start (auto: ImgHdr_LineStart)"),
        param("line_stop", g, "auto", "marker number of a line stop (auto: ImgHdr_LineStop)"),
        param("frame", g, "auto", "marker number of a frame (auto: ImgHdr_Frame)"),
        param("sync_ps", g, "auto", "sync period, ps (auto: header)"),
        param("dtime_ps", g, "auto", "micro-time bin, ps (auto: header)"),
        param("max_dtime", g, "auto", "photons with a micro-time bin >= this are left out (auto: "
              "bins not wholly inside the sync period, as SymPhoTime does)"),
        param("max_line_photons", g, "200000", "photons buffered per line"),
        param("output", g, "", "folder for results (default: 'analyzed data' beside the file)"),
        rfile_vi(g),
        vi("image from markers", g, """
            # Photons of channels 0..7 (all detectors) are buffered during a line (sync time,
            # arrival time after the sync) and placed when the line stops:
            #   x = pix_x * (syncs since the line start) // (syncs in the line),
            #   y = lines since the last frame marker.
            # A photon in the same sync period as a line start belongs to that line; micro-time
            # bins >= max_dtime are left out. Frames add up. image counts photons, arrival_sum
            # adds their arrival times (ps).
            TABLE(image, [`pix_y`, `pix_x`])
            TABLE(arrival_sum, [`pix_y`, `pix_x`])
            TABLE(buf_sync, [`max_line_photons`])
            TABLE(buf_arrival, [`max_line_photons`])
            INTEGER(n_buf)
            INTEGER(in_line)
            INTEGER(line_t0)
            INTEGER(last_stop, -1)
            INTEGER(line)
            INTEGER(lines)
            INTEGER(frames)
            INTEGER(photons)
            INTEGER(photons_in_image)
            INTEGER(left_out)
            INTEGER(buffer_full)
            INTEGER(max_dtime, `max_dtime`)
            CLOCK(c)
            a--%(signals)s-->a:
                c.stop()
                c.start(LAST_SYNC)
                {
                    photons += 1
                    if in_line == 1 or c_start_rec == last_stop:
                        if n_buf < `max_line_photons`:
                            buf_sync[n_buf] = c_start_rec
                            buf_arrival[n_buf] = AbsTime_ps - c_start_rec
                            n_buf += 1
                        else:
                            buffer_full += 1
                }
            a--%(markers)s-->a:
                {
                    if chn == 15 + `line_start`:
                        k = 0
                        for j in range(n_buf):
                            if buf_sync[j] >= AbsTime_ps:
                                buf_sync[k] = buf_sync[j]
                                buf_arrival[k] = buf_arrival[j]
                                k += 1
                        n_buf = k
                        line_t0 = AbsTime_ps
                        in_line = 1
                    elif chn == 15 + `line_stop`:
                        if in_line == 1:
                            span = np.int64(np.round((AbsTime_ps - line_t0) / `sync_ps`))
                            k = 0
                            for j in range(n_buf):
                                s = buf_sync[j]
                                if s >= AbsTime_ps:
                                    buf_sync[k] = s
                                    buf_arrival[k] = buf_arrival[j]
                                    k += 1
                                    continue
                                n = np.int64(np.round((s - line_t0) / `sync_ps`))
                                x = n * `pix_x` // span if span > 0 else -1
                                dt = np.int64(np.round(buf_arrival[j] / `dtime_ps`))
                                if 0 <= x < `pix_x` and line < `pix_y` and dt < max_dtime:
                                    image[line, x] += 1
                                    arrival_sum[line, x] += buf_arrival[j]
                                    photons_in_image += 1
                                else:
                                    left_out += 1
                            n_buf = k
                            line += 1
                            lines += 1
                        in_line = 0
                        last_stop = AbsTime_ps
                    elif chn == 15 + `frame`:
                        line = 0
                        frames += 1
                }
            """ % {"signals": chs(FLIM_PHOTONS), "markers": chs(MARKERS)},
           edges=[("a", "a", FLIM_PHOTONS + MARKERS)]),
        panel("image", g, '''
            use_group("T3")
            src = input_file()
            info = etaflow.open_source(src)
            if info.mode != "T3":
                raise ValueError(f"{src.name} is not a T3 file: FLIM needs sync and micro time")
            h = info.header
            exact = eta.mode == "exact"
            sync = info.sync_period_ps if exact else float(info.eta_time_unit_ps)
            dt = info.dtime_unit_ps if exact else float(info.eta_dtime_unit_ps)
            vals = {
                "pix_x": number("pix_x", int, auto=h.get("ImgHdr_PixX")),
                "pix_y": number("pix_y", int, auto=h.get("ImgHdr_PixY")),
                "line_start": number("line_start", int, auto=h.get("ImgHdr_LineStart")),
                "line_stop": number("line_stop", int, auto=h.get("ImgHdr_LineStop")),
                "frame": number("frame", int, auto=h.get("ImgHdr_Frame", 3)),
                "sync_ps": number("sync_ps", float, auto=sync),
                "dtime_ps": number("dtime_ps", float, auto=dt),
                "max_line_photons": number("max_line_photons", int),
            }
            missing = [k for k, v in vals.items() if v is None]
            if missing:
                raise ValueError(f"{src.name} does not say {', '.join(missing)} (no ImgHdr_ "
                                 "tags): set these parameters")
            vals["max_dtime"] = number("max_dtime", int,
                                       auto=int(math.floor(vals["sync_ps"] / vals["dtime_ps"]
                                                           + 1e-9)))
            for k in ("line_start", "line_stop", "frame"):
                if not 1 <= vals[k] <= 4:
                    raise ValueError(f"{k} must be a marker number 1..4, got {vals[k]}")
            set_parameters(**vals)
            r = eta.run({"timetagger": eta.clips(src)}, group=GROUP)
            image = r["image"]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_ns = np.where(image > 0, r["arrival_sum"] / np.maximum(image, 1) * 1e-3,
                                   np.nan)
            figures = {"pixels": f"{vals['pix_x']} x {vals['pix_y']}",
                       "frames": int(r["frames"]), "lines": int(r["lines"]),
                       "photons": int(r["photons"]), "photons in the image": int(image.sum()),
                       "photons left out": int(r["left_out"]),
                       "max photons per pixel": int(image.max()),
                       "micro-time bins used": f"0 .. {vals['max_dtime'] - 1}"}
            if image.sum():
                figures["mean arrival time ns"] = round(float(r["arrival_sum"].sum()
                                                              / image.sum() * 1e-3), 4)
            if int(r["buffer_full"]):
                logger.warning(f"{int(r['buffer_full'])} photons did not fit the line buffer: "
                               "raise max_line_photons")
            report(f"FLIM image of {src.name}", figures)
            out = output_dir(src)
            stem = f"{src.stem}_flim"
            np.savetxt(out / f"{stem}_photon_count.txt", image, fmt="%d", delimiter="\\t",
                       header=header_text(**figures) + "\\nrows: lines (y), columns: pixels (x)")
            np.savetxt(out / f"{stem}_mean_arrival_ns.txt", mean_ns, fmt="%.5f", delimiter="\\t",
                       header="mean arrival time after the sync per pixel, ns (nan: no photon)")
            eta.send(f"saved {out / (stem + '_photon_count.txt')} and "
                     f"{out / (stem + '_mean_arrival_ns.txt')}")

            def draw(fig):
                ax1, ax2 = fig.subplots(1, 2)
                im1 = ax1.imshow(image, cmap="gray")
                ax1.set_title("photon count")
                fig.colorbar(im1, ax=ax1, shrink=0.8)
                bright = image >= max(5, 0.05 * image.max())    # colour only bright pixels
                shown = np.where(bright, mean_ns, np.nan)
                lo, hi = (np.nanpercentile(shown, [1, 99]) if bright.any() else (0, 1))
                im2 = ax2.imshow(shown, cmap="viridis", vmin=lo, vmax=hi)
                ax2.set_title("mean arrival time (ns)")
                fig.colorbar(im2, ax=ax2, shrink=0.8)
            plot(out / f"{stem}.png", draw)
            result = {"image": image, "mean_arrival_ns": mean_ns, "figures": figures}
            '''),
    ]
    return build(entries)


RECIPES = {
    "Correlation": correlation,
    "Lifetime": lifetime,
    "Countrate": countrate,
    "Two-Time_Correlation": two_time,
    "Simulation": simulation,
    "Multi_Source_Correlation": multi_source,
    "Realtime": realtime,
    "FLIM": flim,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that the files are current")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, make in RECIPES.items():
        text = json.dumps(make(), indent=1, ensure_ascii=False) + "\n"
        path = OUT / f"{name}.eta"
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date: " + ", ".join(stale) + " (run scripts/build_recipes.py)")
        return 1
    print(("rewrote " + ", ".join(stale)) if stale else "all recipes up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
