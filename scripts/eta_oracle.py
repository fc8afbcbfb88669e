#!/usr/bin/env python3
"""Run the original ETA engine as a differential oracle and store its results as test fixtures.

etaflow re-implements ETA 0.9.9 (package ``etabackend``, GPL). This script uses the original engine
strictly as a *black box*: it writes small inputs and recipes, runs ETA on them, and records what ETA
returns. No ETA code is copied into etaflow; the fixtures are ETA's *outputs* (plus the inputs and
recipes we wrote), so etaflow's tests can compare against them without ETA installed.

Side environment (ETA pins numpy < 2, so it cannot share etaflow's environment)::

    cd /work                      # any folder; the repo uses /work/eta-venv
    python3.11 -m venv eta-venv
    eta-venv/bin/pip install etabackend==0.9.9

Regenerate every fixture (deterministic: same bytes on every run)::

    /work/eta-venv/bin/python scripts/eta_oracle.py --out tests/fixtures/eta_oracle

Options: ``--only NAME [NAME ...]`` runs a subset of cases (prefix match), ``--list`` lists the
cases, ``--jobs N`` runs N cases in parallel, ``--timeout S`` is the per-case time limit.

This script must never import etaflow (different numpy). The real recorded files are read from
``../shared/data`` beside the checkout and are referenced, never copied.

How it works
------------
Every case runs in a child process (``--child NAME``) with a time limit, because some ETA bugs hang
forever (virtual-channel FIFO overflow, illegal PicoHarp channels). A child writes, in the output
folder:

* ``NAME.json``  - the manifest (see ``README.md`` in the output folder for the schema);
* ``NAME.npz``   - every result array ETA returned (histograms, TABLEs) and every INTEGER (0-d
  arrays), keyed ``<run>.<step>.<result name>``;
* ``NAME*.eta``  - the recipes the case loaded (our own, small; the shipped ETA recipes are referenced
  under ``../shared/eta-reference/recipes`` instead);
* ``NAME*.qutag`` / ``NAME*.ptu`` - the inputs the case wrote itself.

Oracle environment: children run with ``NUMBA_OPT=0`` (``--numba-opt``). ETA declares its C reader and
merge-engine functions (which write through pointers) to numba as *pure* functions (LLVM ``readonly``
``nounwind``). With the numba/llvmlite that ``pip install etabackend==0.9.9`` resolves today (numba
0.68, llvmlite 0.50), LLVM's default -O3 exploits that: some recipes spin forever on the first events
(e.g. a group whose VIs never write an array), and ``abort()`` is silently miscompiled (later events are
still processed, ``AbsTime_ps`` reads stale). At -O0 the results agree with every verified
micro-experiment of the spec and with ETA's stored references; at -O3 every other run that terminates
gives the same results as at -O0 (compared on all cases of this script). The case
``z_oracle_opt3_artifacts`` documents both artefacts; they are not ETA behaviour.

The manifest is rewritten before and after every ETA call, so when a child hangs or crashes the parent
still knows which call did it and records ``"status": "timeout"`` / ``"crashed"`` for that step.
Finally the parent writes ``index.json`` (all cases, file sizes) and ``README.md``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_PREFIX = "../shared/"  # how manifests name shared files (relative to the repo root)
MAX_FIXTURE_BYTES = 6 * 1024 * 1024

QT_FORMAT = 4  # FORMAT_QT_BINARY
PQ_FORMAT = 0  # FORMAT_PQ
AUTO_FORMAT = -1

DEFAULT_TIMEOUT = 300.0
HANG_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------
# deterministic file writers (no ETA needed)
# ---------------------------------------------------------------------------------------------

def save_npz(path: pathlib.Path, arrays: dict) -> None:
    """Same format as ``np.savez_compressed`` (a deflated zip of .npy files), but byte-reproducible:
    fixed member order and fixed zip timestamps, so regenerated fixtures do not churn in git."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def write_json(path: pathlib.Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


QT_HEADER = bytes([0x87, 0xB3, 0x91, 0xFA]) + bytes(36)
QT_RECORD = np.dtype([("time", "<i8"), ("channel", "<u2")])  # packed, 10 bytes


def qutag_bytes(events) -> bytes:
    """quTAG binary (format 4): 40-byte header (magic 87 B3 91 FA), then int64 ps + uint16 channel."""
    rec = np.zeros(len(events), dtype=QT_RECORD)
    for i, (t, c) in enumerate(events):
        rec[i] = (t, c)
    assert QT_RECORD.itemsize == 10
    return QT_HEADER + rec.tobytes()


# PTU tag type codes (spec/file-formats.md section 1.3)
TY_EMPTY8, TY_INT8, TY_FLOAT8, TY_ANSI = 0xFFFF0008, 0x10000008, 0x20000008, 0x4001FFFF


def _ptu_tag(ident: str, typ: int, value, idx: int = -1) -> bytes:
    head = ident.encode("ascii").ljust(32, b"\0") + struct.pack("<iI", idx, typ)
    if typ == TY_FLOAT8:
        return head + struct.pack("<d", value)
    if typ == TY_ANSI:
        payload = value.encode("ascii") + b"\0"
        payload = payload.ljust((len(payload) + 7) // 8 * 8, b"\0")
        return head + struct.pack("<q", len(payload)) + payload
    return head + struct.pack("<q", int(value))


def ptu_bytes(rectype: int, global_res_s: float, res_s: float, records: np.ndarray,
              mode: int, sync_rate: int, comment: str) -> bytes:
    """A minimal but complete PicoQuant PTU (magic PQTTTR, version 1.0.00) with the given records."""
    tags = [
        _ptu_tag("File_Comment", TY_ANSI, comment),
        _ptu_tag("Measurement_Mode", TY_INT8, mode),
        _ptu_tag("Measurement_SubMode", TY_INT8, 1),
        _ptu_tag("HW_Type", TY_ANSI, "HydraHarp"),
        _ptu_tag("HW_InpChannels", TY_INT8, 2),
        _ptu_tag("HWSync_Divider", TY_INT8, 1),
        _ptu_tag("MeasDesc_BinningFactor", TY_INT8, 1),
        _ptu_tag("MeasDesc_GlobalResolution", TY_FLOAT8, global_res_s),
        _ptu_tag("MeasDesc_Resolution", TY_FLOAT8, res_s),
        _ptu_tag("TTResult_SyncRate", TY_INT8, sync_rate),
        _ptu_tag("TTResultFormat_TTTRRecType", TY_INT8, rectype),
        _ptu_tag("TTResultFormat_BitsPerRecord", TY_INT8, 32),
        _ptu_tag("TTResult_NumberOfRecords", TY_INT8, len(records)),
        _ptu_tag("Header_End", TY_EMPTY8, 0),
    ]
    head = b"PQTTTR\0\0" + b"1.0.00\0\0" + b"".join(tags)
    return head + np.asarray(records, dtype="<u4").tobytes()


def hh_t3(special: int, channel: int, dtime: int, nsync: int) -> int:
    """HydraHarp T3 record: bit 31 special, 30-25 channel, 24-10 dtime, 9-0 nsync."""
    assert 0 <= channel < 64 and 0 <= dtime < 2**15 and 0 <= nsync < 1024
    return (special << 31) | (channel << 25) | (dtime << 10) | nsync


def hh_t2(special: int, channel: int, timetag: int) -> int:
    """HydraHarp T2 record: bit 31 special, 30-25 channel, 24-0 timetag."""
    assert 0 <= channel < 64 and 0 <= timetag < 2**25
    return (special << 31) | (channel << 25) | timetag


HH_V2_T3, HH_V2_T2 = 0x01010304, 0x01010204
SYN_PERIOD_S = 12.5125876e-9  # non-integer ps: ETA truncates it to 12512 ps
DT_RES_S = 16e-12


def synthetic_t3_records(seed: int = 20240617, n_photons: int = 172_000):
    """~200 000 HydraHarp V2 T3 records: two detectors with exponential decays, sync gaps that give
    ordinary (count 1, and old-style count 0) and multi-count overflow records, and a few exact
    two-channel coincidences (identical nsync and dtime, so ETA sees equal times)."""
    rng = np.random.default_rng(seed)
    gaps = rng.geometric(1 / 150.0, n_photons) - 1           # syncs between photons, 0 allowed
    long_gap = rng.random(n_photons) < 0.002
    gaps[long_gap] += rng.integers(2_000, 3_000_000, long_gap.sum())  # multi-overflow records
    syncs = np.cumsum(gaps)
    chan = (rng.random(n_photons) < 0.55).astype(np.int64)    # input 1 -> chn 0, input 2 -> chn 1
    tau_bins = np.where(chan == 0, 1200.0, 3500.0) / 16.0
    dt = 125.0 + rng.exponential(tau_bins) + rng.normal(0.0, 50.0 / 16.0, n_photons)
    dtime = np.clip(np.round(dt), 0, 2**15 - 1).astype(np.int64)
    twin = rng.random(n_photons) < 0.004                       # exact coincidences
    records = []
    n_ofl_records = 0
    wrap = 0
    for i in range(n_photons):
        s = int(syncs[i])
        w = s // 1024
        k = w - wrap
        while k > 0:
            c = min(k, 1023)
            if c == 1 and (i % 20 == 7):
                c_field = 0  # old-style single overflow (nsync 0 means 1)
            else:
                c_field = c
            records.append(hh_t3(1, 63, 0, c_field))
            n_ofl_records += 1
            k -= c
        wrap = w
        ch = int(chan[i])
        records.append(hh_t3(0, ch, int(dtime[i]), s % 1024))
        if twin[i]:
            records.append(hh_t3(0, 1 - ch, int(dtime[i]), s % 1024))
    return np.array(records, dtype=np.uint32), n_ofl_records


# ---------------------------------------------------------------------------------------------
# recipe builder
# ---------------------------------------------------------------------------------------------

def vi(name: str, code: str, states=("a",), edges=(), initial=0, group="main") -> dict:
    """A Virtual Instrument. ``edges`` are (source state, target state, "c1,c2") triples."""
    return {"kind": "vi", "name": name, "group": group, "code": textwrap.dedent(code).strip("\n") + "\n",
            "states": list(states), "edges": list(edges), "initial": initial}


def param(name: str, value: str, group="main") -> dict:
    return {"kind": "param", "name": name, "group": group, "value": str(value)}


def make_recipe(entries) -> dict:
    """Build an .eta recipe object: an ``eta_index_table`` JSON string plus one JSON-string content
    per VI id (spec section 3.1)."""
    table, content = [], {}
    for i, e in enumerate(entries):
        if e["kind"] == "vi":
            ident = f"vi_oracle{i:02d}"
            names = e["states"]
            nodes = []
            for k, s in enumerate(names):
                node = {"text": s, "x": 100 + 120 * k, "y": 100}
                if k == e["initial"]:
                    node["initial"] = True
                nodes.append(node)
            edges = [{"source": names.index(a), "target": names.index(b), "text": t} for a, b, t in e["edges"]]
            table.append({"id": ident, "name": e["name"], "group": e["group"], "info": "", "config": ""})
            content[ident] = json.dumps({"nodes": nodes, "edges": edges, "usercode": e["code"]})
        else:
            ident = f"var_oracle{i:02d}"
            table.append({"id": ident, "name": e["name"], "group": e["group"], "info": "", "config": e["value"]})
    recipe = {"eta_index_table": json.dumps(table)}
    recipe.update(content)
    return recipe


def source_vi(*rfiles: str, extra: str = "", group="main") -> dict:
    """A VI that only declares RFILEs, like the shipped recipes. rfiles: 'RFILE(f,[0,1,2,3])' texts."""
    return vi("source", "\n".join(rfiles) + "\n" + extra, group=group)


def log_vi(channels, rows=64, table="log", counter="nlog", group="main", name="logger") -> dict:
    """A VI that appends (AbsTime_ps, chn, fileid) of every event on ``channels`` to TABLE ``table``
    in order of processing (embedded code)."""
    chans = ",".join(str(c) for c in channels)
    code = f"""
    TABLE({table},[{rows},3])
    INTEGER({counter})
    a:
        {{{{
        if {counter} < {rows}:
            {table}[{counter}, 0] = AbsTime_ps
            {table}[{counter}, 1] = chn
            {table}[{counter}, 2] = fileid
        {counter} += 1
        }}}}
    """
    return vi(name, code, edges=[("a", "a", chans)], group=group)


def two_state(name: str, code: str, start_chns: str, stop_chns: str, group="main") -> dict:
    """The start/stop VI shape of the shipped correlation recipes (initial state 'stop')."""
    return vi(name, code, states=("start", "stop"), initial=1, group=group,
              edges=[("start", "stop", stop_chns), ("stop", "start", start_chns),
                     ("start", "start", start_chns), ("stop", "stop", stop_chns)])


def cut_split(k):
    return {"method": "split_file", "cuts": k}


def cut_clips(n):
    return {"method": "clips", "read_events": n}


# ---------------------------------------------------------------------------------------------
# the child: runs one case inside ETA
# ---------------------------------------------------------------------------------------------

CLIP_FIELDS = ("fseekpoint", "headeroffset", "TTRes_pspr", "DTRes_pspr", "SYNCRate_pspr",
               "BytesofRecords", "RecordType", "GlobalTimeShift", "CHANNEL_OFFSET", "MARKER_OFFSET",
               "batch_actualread_length", "next_RecID_in_batch", "overflowcorrection")


class Recorder:
    """Collects one case: inputs, recipes, ETA calls and their results."""

    def __init__(self, name: str, checks: str, out: pathlib.Path):
        import logging

        logging.getLogger("etabackend").setLevel(logging.ERROR)
        from etabackend.eta import ETA
        import etabackend
        import llvmlite
        import numba

        self.out = out
        self.name = name
        self.eta = ETA()
        self.loaded_recipe = None
        self.arrays: dict[str, np.ndarray] = {}
        self.manifest = {
            "case": name,
            "checks": checks,
            "oracle": {"etabackend": getattr(etabackend, "__version__", "0.9.9"),
                       "numpy": np.__version__, "numba": numba.__version__,
                       "llvmlite": llvmlite.__version__, "python": sys.version.split()[0],
                       "NUMBA_OPT": os.environ.get("NUMBA_OPT", "(default)")},
            "status": "running",
            "files": [],
            "runs": [],
        }
        self.flush()

    # ---- files -------------------------------------------------------------------------------
    def _own(self, fname: str, data: bytes) -> str:
        assert "/" not in fname and fname.startswith(self.name), fname
        (self.out / fname).write_bytes(data)
        if fname not in self.manifest["files"]:
            self.manifest["files"].append(fname)
        return fname

    def qutag(self, suffix: str, events) -> str:
        return self._own(f"{self.name}{suffix}.qutag", qutag_bytes(events))

    def ptu(self, suffix: str, data: bytes) -> str:
        return self._own(f"{self.name}{suffix}.ptu", data)

    def recipe(self, suffix: str, entries) -> str:
        obj = make_recipe(entries)
        return self._own(f"{self.name}{suffix}.eta", (json.dumps(obj, indent=1) + "\n").encode())

    @staticmethod
    def shared_recipe(fname: str) -> str:
        return SHARED_PREFIX + "eta-reference/recipes/" + fname

    def path(self, ref: str) -> pathlib.Path:
        return (ROOT / ref).resolve() if ref.startswith(SHARED_PREFIX) else self.out / ref

    def flush(self) -> None:
        write_json(self.out / f"{self.name}.json", self.manifest)
        save_npz(self.out / f"{self.name}.npz", self.arrays)

    # ---- ETA calls ---------------------------------------------------------------------------
    def _load(self, recipe_ref: str):
        if self.loaded_recipe == recipe_ref:
            return
        self.loaded_recipe = None
        obj = json.loads(self.path(recipe_ref).read_text(encoding="utf-8"))
        self.eta.load_recipe(copy.deepcopy(obj))
        self.loaded_recipe = recipe_ref

    def _header(self, fref: str, fmt: int):
        clip = self.eta.clip_file(str(self.path(fref)), read_events=1, format=fmt)
        if clip is None:
            return None
        return {k: int(getattr(clip, k)) for k in ("headeroffset", "TTRes_pspr", "DTRes_pspr",
                                                 "SYNCRate_pspr", "BytesofRecords", "RecordType")}

    def _sources(self, spec: dict):
        gens = {}
        for rfile, s in spec.items():
            fn = str(self.path(s["file"]))
            cut = s["cut"]
            kw = {} if s["format"] == AUTO_FORMAT else {"format": s["format"]}
            if cut["method"] == "split_file":
                gens[rfile] = self.eta.split_file(fn, cut["cuts"], **kw)
            elif cut["method"] == "clips":
                gens[rfile] = self.eta.clips(fn, read_events=cut["read_events"], **kw)
            else:
                raise ValueError(cut)
        return gens

    def _record(self, res: dict, key_prefix: str) -> dict:
        from etabackend.clip import Clip

        out = {}
        for k in sorted(res):
            v = res[k]
            if isinstance(v, Clip) or v is None:
                if v is None:
                    out[k] = {"type": "Clip", "value": None}
                else:
                    out[k] = {"type": "Clip", "get_pos": int(v.get_pos()),
                              "fields": {f: int(getattr(v, f)) for f in CLIP_FIELDS}}
            elif isinstance(v, np.ndarray):
                a = np.array(v, copy=True)
                self.arrays[f"{key_prefix}.{k}"] = a
                entry = {"type": "array", "npz": f"{key_prefix}.{k}", "dtype": str(a.dtype),
                         "shape": list(a.shape)}
                if a.dtype.kind in "iub":
                    entry["sum"] = int(a.sum(dtype=np.int64))
                    entry["nonzero"] = int(np.count_nonzero(a))
                out[k] = entry
            elif isinstance(v, (np.integer, int)) and not isinstance(v, bool):
                self.arrays[f"{key_prefix}.{k}"] = np.array(v, dtype=np.int64)
                out[k] = {"type": "integer", "value": int(v), "npz": f"{key_prefix}.{k}"}
            else:
                out[k] = {"type": type(v).__name__, "repr": repr(v)}
        return out

    def run(self, label: str, recipe: str, group: str, sources: dict, steps=None, note: str | None = None,
            headers=True):
        """One analysis: load ``recipe``, then the ETA calls in ``steps`` on one task.

        sources: {rfile: {"file": ref, "format": code, "cut": {...}}}; the same generators are
        passed to every step. steps: list of {"call": "run"|"resume", "options": {...}}; "run"
        creates the task, "resume" passes ``resume_task`` (all with ``return_task=True``)."""
        assert "." not in label
        steps = steps or [{"call": "run", "options": {}}]
        src_manifest = {}
        for rfile, s in sources.items():
            d = dict(s)
            if headers:
                try:
                    d["eta_header"] = self._header(s["file"], s["format"])
                except Exception as e:  # header errors are results too
                    d["eta_header"] = {"error": f"{type(e).__name__}: {e}"}
            src_manifest[rfile] = d
        run = {"label": label, "recipe": recipe, "group": group, "sources": src_manifest,
               "steps": [], "status": "running"}
        if note:
            run["note"] = note
        self.manifest["runs"].append(run)
        self.flush()
        try:
            self._load(recipe)
        except Exception as e:
            cause = e.__cause__ or e
            run["status"] = "compile_error"
            run["error"] = {"type": type(e).__name__, "cause_type": type(cause).__name__,
                            "message": str(cause).strip()[:500]}
            self.flush()
            return run
        gens = self._sources(sources)
        task = None
        for i, st in enumerate(steps):
            opts = dict(st.get("options", {}))
            step = {"call": st["call"], "options": opts, "status": "running"}
            run["steps"].append(step)
            self.flush()
            try:
                if st["call"] == "run":
                    res, task = self.eta.run(gens, group=group, return_task=True, **opts)
                elif st["call"] == "resume":
                    res, task = self.eta.run(gens, resume_task=task, group=group, return_task=True, **opts)
                else:
                    raise ValueError(st)
                step["result_keys"] = sorted(res)
                step["results"] = self._record(res, f"{label}.s{i}")
                step["status"] = "ok"
            except Exception as e:
                step["status"] = "error"
                step["error"] = {"type": type(e).__name__, "message": str(e).strip()[:500],
                                 "where": traceback.format_exc().strip().splitlines()[-3:-1]}
                run["status"] = "error"
                self.flush()
                break
            self.flush()
        if run["status"] == "running":
            run["status"] = "ok"
        self.flush()
        return run

    def result(self, label: str, key: str, step: int = -1):
        """Array of a recorded result (for assertions inside case functions)."""
        run = next(r for r in self.manifest["runs"] if r["label"] == label)
        s = run["steps"][step]
        return self.arrays[s["results"][key]["npz"]]

    def finish(self):
        bad = [r["label"] for r in self.manifest["runs"] if r["status"] != "ok"]
        self.manifest["status"] = "ok" if not bad else "ok_with_failures"
        if bad:
            self.manifest["failed_runs"] = bad
        self.flush()


CASES: dict[str, tuple] = {}


def case(name: str, checks: str, timeout: float = DEFAULT_TIMEOUT, env: dict | None = None):
    def deco(fn):
        assert name not in CASES
        CASES[name] = (fn, checks, timeout, env or {})
        return fn
    return deco


def qsrc(fname, cut=None, fmt=QT_FORMAT):
    return {"file": fname, "format": fmt, "cut": cut or cut_split(1)}


# =============================================================================================
# 1. tests-Correlation.eta on the real files
# =============================================================================================

T2_FILE = SHARED_PREFIX + "data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres"
QT_FILE = SHARED_PREFIX + "data/qutag/19_qutag_80MHz_HBT_sync_filtered.qutag"
T2_REF = ROOT.parent / "shared/eta-reference/results/200204_HH400_T2_320MHz_HBT_g2.npz"
QT_REF = ROOT.parent / "shared/eta-reference/results/19_qutag_80MHz_HBT_sync_filtered.npz"


def _corr(r: Recorder, fileref: str, group: str, ref: pathlib.Path):
    recipe = r.shared_recipe("tests-Correlation.eta")
    for k in (1, 2, 4, 7):
        r.run(f"split{k}", recipe, group,
              {"timetagger1": {"file": fileref, "format": AUTO_FORMAT, "cut": cut_split(k)}})
    z = np.load(ref)
    assert np.array_equal(r.result("split4", "h3"), z["hist1"]), "split4 h3 != stored ETA reference hist1"
    assert np.array_equal(r.result("split4", "h4"), z["hist2"]), "split4 h4 != stored ETA reference hist2"
    r.manifest["reference_check"] = {
        "split4": f"h3 == hist1 and h4 == hist2 of {SHARED_PREFIX}eta-reference/results/{ref.name} (asserted)"}


@case("corr_hht2", "tests-Correlation.eta group HHT2 on the 200204 HydraHarp T2 file, split_file 1/2/4/7: h3 and h4 "
      "(split 4 equals ETA's stored reference).")
def _(r):
    _corr(r, T2_FILE, "HHT2", T2_REF)


@case("corr_qutag", "tests-Correlation.eta group quTAG on the 19_qutag file (not time-ordered), split_file 1/2/4/7: "
      "h3 and h4 (split 4 equals ETA's stored reference).")
def _(r):
    _corr(r, QT_FILE, "quTAG", QT_REF)


# =============================================================================================
# 2. synthetic HydraHarp V2 T3 file: Lifetime.eta and tests-Correlation HHT3
# =============================================================================================

@case("t3_synthetic", "Lifetime.eta group compile (split 1/2/4: t1, t2, t3) and tests-Correlation.eta group HHT3 "
      "(split 1/2/4/7: h3, h4) on a synthetic HydraHarp V2 T3 PTU with a non-integer sync period "
      "(12512.5876 ps, truncated by ETA), 16 ps bins, overflow records and non-monotonic times.")
def _(r):
    recs, n_ofl = synthetic_t3_records()
    data = ptu_bytes(HH_V2_T3, SYN_PERIOD_S, DT_RES_S, recs, mode=3, sync_rate=int(round(1 / SYN_PERIOD_S)),
                     comment="etaflow eta_oracle synthetic HydraHarp V2 T3: 2 inputs, exponential decays")
    f = r.ptu("", data)
    r.manifest["input_description"] = {
        f: {"records": int(len(recs)), "overflow_records": int(n_ofl), "rectype": hex(HH_V2_T3),
            "MeasDesc_GlobalResolution_s": SYN_PERIOD_S, "MeasDesc_Resolution_s": DT_RES_S,
            "generator": "synthetic_t3_records(seed=20240617, n_photons=172000) in scripts/eta_oracle.py"}}
    life = r.shared_recipe("Lifetime.eta")
    for k in (1, 2, 4):
        r.run(f"lifetime_split{k}", life, "compile", {"UniBuf1": {"file": f, "format": AUTO_FORMAT,
                                                                  "cut": cut_split(k)}})
    corr = r.shared_recipe("tests-Correlation.eta")
    for k in (1, 2, 4, 7):
        r.run(f"hht3_split{k}", corr, "HHT3", {"timetagger1": {"file": f, "format": AUTO_FORMAT,
                                                              "cut": cut_split(k)}})


# =============================================================================================
# 3. Appendix A micro-experiments (spec/eta-behaviour.md) on tiny quTAG-binary inputs
# =============================================================================================

SRC = "RFILE(f,[0,1,2,3])"

CORR_RING = """
HISTOGRAM(h,(200,1))
CLOCK(c,4,1)
start:
    c.start()
stop:
    c.stop()
    h.record_all(c)
"""


@case("a01_ring_record_all", "A1: CLOCK(c,4,1) ring keeps 3 starts and record_all skips slot 0 when wrapped: "
      "starts every 10 ps on chn 1, one stop at 100 on chn 2, for 1..8 starts.")
def _(r):
    rec = r.recipe("", [source_vi(SRC), two_state("ring", CORR_RING, "1", "2")])
    for n in range(1, 9):
        f = r.qutag(f"_n{n}", [(10 * i, 1) for i in range(n)] + [(100, 2)])
        r.run(f"n{n}", rec, "main", {"f": qsrc(f)})


def _single_clock_vi(name, hist, clock, dims):
    code = f"""
    HISTOGRAM({hist},{dims})
    CLOCK({clock})
    start:
        {clock}.start()
    stop:
        {clock}.stop()
        {hist}.record({clock})
    """
    return two_state(name, code, "1", "2")


@case("a02_single_clock_binning", "A2: single-clock record() binning idx = modifier(stop-start)//width, kept only "
      "if 0<=idx<bins, for modifiers none, \"time-1\", \"time+64\" (intervals -50,16,15,-5,32,0,1).")
def _(r):
    rec = r.recipe("", [source_vi(SRC),
                        _single_clock_vi("plain", "h_plain", "ka", "(20,16)"),
                        _single_clock_vi("minus1", "h_minus1", "kb", '(20,16,"time-1")'),
                        _single_clock_vi("plus64", "h_plus64", "kc", '(20,16,"time+64")')])
    ev = []
    for base, d in ((1000, -50), (2000, 16), (3000, 15), (4000, -5), (5000, 32), (6000, 0), (7000, 1)):
        ev += [(base, 1), (base + d, 2)]
    f = r.qutag("", ev)
    r.run("intervals", rec, "main", {"f": qsrc(f)})


@case("a03_tie_order_two_rfiles", "A3: tie order between two RFILEs (f2 has offset 2, its raw 3 becomes chn 5 = a "
      "virtual channel number) and zero-delay copies 0->5, 2->6, 1->7; processing stops after f2's last record.")
def _(r):
    delay = vi("delay", """
    --0-->a:
        emit(5,0)
    --2-->a:
        emit(6,0)
    --1-->a:
        emit(7,0)
    """, edges=[("a", "a", "0,1,2")])
    rec = r.recipe("", [source_vi("RFILE(f1,[0,1])", "RFILE(f2,[2,3])"), log_vi(range(8)), delay])
    f1 = r.qutag("_f1", [(100, 0), (200, 0), (300, 1)])
    f2 = r.qutag("_f2", [(100, 2), (200, 3), (300, 2)])
    r.run("main", rec, "main", {"f1": qsrc(f1), "f2": qsrc(f2)})


@case("a04_beforeloop_per_window", "A4: code before the first header (cnt = cnt + 1) runs at every mainloop entry: "
      "12 records with split_file 1/3/5/7/12.")
def _(r):
    rec = r.recipe("", [vi("source", f"""
    {SRC}
    INTEGER(cnt)
    cnt = cnt + 1
    """)])
    f = r.qutag("", [(10 * i, 1) for i in range(12)])
    for k in (1, 3, 5, 7, 12):
        r.run(f"split{k}", rec, "main", {"f": qsrc(f, cut_split(k))})


A05_HEADERS = {
    "arrow_without_channel": "a-->a:",
    "conditional_entry": "--1-->a:",
    "conditional_exit": "a--1-->:",
    "two_states": "a,b:",
    "tilde_arrow": "a~~1~~>a:",
    "two_transitions": "a--1-->a,a--2-->a:",
}


@case("a05_headers", "A5: code-panel header forms: 'a-->a:' fails to compile; '--1-->a:', 'a--1-->:', 'a,b:', "
      "'a~~1~~>a:', 'a--1-->a,a--2-->a:' compile; INTEGER x counts how often each section ran.")
def _(r):
    # states a (initial), b; a-1->a, a-2->a, a-3->b, b-1->b, b-4->a ; events 1,2,1,3,1,4,2
    f = r.qutag("", [(10, 1), (20, 2), (30, 1), (40, 3), (50, 1), (60, 4), (70, 2)])
    for label, header in A05_HEADERS.items():
        code = f"INTEGER(x)\n{header}\n    x += 1\n"
        rec = r.recipe(f"_{label}", [source_vi(SRC),
                                     vi("hdr", code, states=("a", "b"),
                                        edges=[("a", "a", "1,2"), ("a", "b", "3"), ("b", "b", "1"),
                                               ("b", "a", "4")])])
        r.run(label, rec, "main", {"f": qsrc(f)}, note=f"header {header!r}")


@case("a06_result_names", "A6: result-name filter: symbols chn_hist, my_start, good, last_value, fine, tab, "
      "retchn are declared; ETA returns only the names without a blacklisted substring.")
def _(r):
    code = """
    HISTOGRAM(chn_hist,(10,1))
    HISTOGRAM(fine,(10,1))
    CLOCK(cl)
    INTEGER(my_start,1)
    INTEGER(good,2)
    INTEGER(last_value,3)
    INTEGER(retchn,4)
    TABLE(tab,[4])
    start:
        cl.start()
    stop:
        cl.stop()
        chn_hist.record(cl)
        fine.record(cl)
    """
    rec = r.recipe("", [source_vi(SRC), two_state("names", code, "1", "2")])
    f = r.qutag("", [(0, 1), (3, 2)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("a07_emit_repeat_fifo", "A7: emit(9,0,10,3) at T=0 and T=5: a virtual channel delivers in FIFO order of "
      "emission (0,10,20,5,15,25), not sorted; terminator event at 100.")
def _(r):
    rec = r.recipe("", [source_vi(SRC), log_vi([1, 2, 9]),
                        vi("rep", "a:\n    emit(9,0,10,3)\n", edges=[("a", "a", "1")])])
    f = r.qutag("", [(0, 1), (5, 1), (100, 2)])
    r.run("main", rec, "main", {"f": qsrc(f)})


def _coinc_trace(table="trace", counter="ntr", cols=("AbsTime_ps", "flag", "co[0]", "co[1]"), hits=True):
    lines = [f"if {counter} < 32:"]
    for j, c in enumerate(cols):
        lines.append(f"    {table}[{counter}, {j}] = {c}")
    lines.append(f"{counter} += 1")
    if hits:
        lines += ["if flag == 1:", "    hits += 1"]
    body = "\n".join("    " + ln for ln in lines)
    return "    {{\n" + body + "\n    }}"


@case("a08_coincidence", "A8: COINCIDENCE(co,2,flag,50) fill/reset: flag after each fill, slot values, and "
      "number of fills that set the flag (hits).")
def _(r):
    trace = _coinc_trace()
    code = f"""
COINCIDENCE(co,2,flag,50)
INTEGER(hits)
INTEGER(ntr)
TABLE(trace,[32,4])
--1-->a:
    co.fill(0)
{trace}
--2-->a:
    co.fill(1)
{trace}
--3-->a:
    co.reset()
{trace}
"""
    rec = r.recipe("", [source_vi(SRC), vi("coinc", code, edges=[("a", "a", "1,2,3")])])
    f = r.qutag("", [(0, 1), (5, 2), (100, 1), (400, 2), (500, 2), (510, 1), (2000, 3)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("a09_image_and_2d", "A9: HISTOGRAM(img,[(50,1)],[3]) with img[px].record(c1) (image prefix from an INTEGER) "
      "and 2-D h2.record(c1,c2) counted only when every dimension is in range.")
def _(r):
    code = """
    HISTOGRAM(img,[(50,1)],[3])
    HISTOGRAM(h2,[(50,1),(50,1)])
    CLOCK(c1)
    CLOCK(c2)
    INTEGER(px)
    --1-->a:
        c1.start()
    --2-->a:
        c1.stop()
        img[px].record(c1)
        px += 1
    --3-->a:
        c2.start()
    --4-->a:
        c2.stop()
        h2.record(c1,c2)
    """
    rec = r.recipe("", [source_vi(SRC), vi("img", code, edges=[("a", "a", "1,2,3,4")])])
    f = r.qutag("", [(0, 1), (0, 3), (10, 2), (30, 4), (100, 1), (100, 3), (120, 2), (125, 4),
                     (200, 1), (200, 3), (205, 2), (300, 4)])
    r.run("main", rec, "main", {"f": qsrc(f)})


ABORT_VIS = [
    vi("aborter", "INTEGER(seen)\na:\n    abort()\n    seen = AbsTime_ps\n", edges=[("a", "a", "2")]),
    vi("counter", "INTEGER(x)\nINTEGER(after)\na:\n    x += 1\n    after = AbsTime_ps\n",
       edges=[("a", "a", "1,2")]),
]


@case("a10_abort", "A10: abort() on the 2nd event: the rest of that event's code (same and later VIs) sees "
      "AbsTime_ps = INF; later events are not processed.")
def _(r):
    rec = r.recipe("", [source_vi(SRC), *ABORT_VIS])
    f = r.qutag("", [(10, 1), (20, 2), (30, 1), (40, 1)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("a11_interrupt_resume", "A11: embedded INTERRUPT = 1 on every 3rd event with max_autofeed=1 and resumes "
      "(x and get_pos after each call), the same with default auto-feed, and the interrupt() action.")
def _(r):
    emb = r.recipe("_embedded", [source_vi(SRC), vi("intr", """
    INTEGER(x)
    a:
        {{
        x += 1
        if x % 3 == 0:
            INTERRUPT = 1
        }}
    """, edges=[("a", "a", "1")])])
    act = r.recipe("_action", [source_vi(SRC), vi("intr", """
    INTEGER(x)
    a:
        x += 1
        interrupt()
    """, edges=[("a", "a", "1")])])
    f = r.qutag("", [(10 * (i + 1), 1) for i in range(10)])
    one = {"max_autofeed": 1}
    r.run("embedded_autofeed1", emb, "main", {"f": qsrc(f)},
          steps=[{"call": "run", "options": one}] + [{"call": "resume", "options": one}] * 5)
    r.run("embedded_default", emb, "main", {"f": qsrc(f)})
    r.run("action_autofeed1", act, "main", {"f": qsrc(f)},
          steps=[{"call": "run", "options": one}] + [{"call": "resume", "options": one}] * 3)
    r.run("action_default", act, "main", {"f": qsrc(f)})


@case("a12_integer_keyword", "A12: keyword arguments are passed as text: INTEGER(x,initvalue=5) -> 5 by accident, "
      "INTEGER(y,7) -> 7, INTEGER(z) -> 0.")
def _(r):
    rec = r.recipe("", [source_vi(SRC, extra="INTEGER(x,initvalue=5)\nINTEGER(y,7)\nINTEGER(z)\n")])
    f = r.qutag("", [(10, 1)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("a13_literal_repeat_zero", "A13: emit(9,0,5,0) (literal repeat 0 = one copy) on each of 12 events: "
      "11 chn-9 deliveries (the last copy is lost at end of data).")
def _(r):
    rec = r.recipe("", [source_vi(SRC), log_vi([1, 9]),
                        vi("rep0", "a:\n    emit(9,0,5,0)\n", edges=[("a", "a", "1")])])
    f = r.qutag("", [(100 * i, 1) for i in range(12)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("a14_coincidence_windows", "A14: COINCIDENCE is reset at every mainloop entry: alternating fills 5 ps apart "
      "(threshold 50) give 5 hits in 1 window and 0 hits in 6 one-record windows.")
def _(r):
    trace = _coinc_trace()
    code = f"""
COINCIDENCE(co,2,flag,50)
INTEGER(hits)
INTEGER(ntr)
TABLE(trace,[32,4])
--1-->a:
    co.fill(0)
{trace}
--2-->a:
    co.fill(1)
{trace}
"""
    rec = r.recipe("", [source_vi(SRC), vi("coinc", code, edges=[("a", "a", "1,2")])])
    f = r.qutag("", [(5 * i, 1 + i % 2) for i in range(6)])
    for k in (1, 2, 3, 6):
        r.run(f"split{k}", rec, "main", {"f": qsrc(f, cut_split(k))})


@case("a15_abort_resume", "A15: abort() at the 2nd of 6 events stops the run (x=2); eta.run(resume_task=task) "
      "continues (x=6).")
def _(r):
    rec = r.recipe("", [source_vi(SRC), *ABORT_VIS])
    f = r.qutag("", [(10, 1), (20, 2), (30, 1), (40, 1), (50, 1), (60, 1)])
    r.run("main", rec, "main", {"f": qsrc(f)},
          steps=[{"call": "run", "options": {}}, {"call": "resume", "options": {}}])


@case("a16_hist_clear", "A16: h.clear() zeroes the histogram: counts recorded before the clear event are erased, "
      "later ones kept.")
def _(r):
    code = """
    HISTOGRAM(h,(10,1))
    CLOCK(c)
    --1-->a:
        c.start()
    --2-->a:
        c.stop()
        h.record(c)
    --3-->a:
        h.clear()
    """
    rec = r.recipe("", [source_vi(SRC), vi("clr", code, edges=[("a", "a", "1,2,3")])])
    f = r.qutag("", [(0, 1), (3, 2), (10, 1), (14, 2), (20, 3), (30, 1), (35, 2), (40, 1), (46, 2)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("a17_eventless_window", "A17: a window with no event (only overflow records) ends the whole analysis: "
      "hand-made HydraHarp V2 T2 PTU (1 ps) event, overflow, overflow, 3 events; clips of 1/2/3 records vs one window.")
def _(r):
    recs = [hh_t2(0, 0, 10), hh_t2(1, 63, 1), hh_t2(1, 63, 1), hh_t2(0, 0, 20), hh_t2(0, 0, 30), hh_t2(0, 1, 40)]
    f = r.ptu("", ptu_bytes(HH_V2_T2, 1e-12, 1e-12, np.array(recs, dtype=np.uint32), mode=2, sync_rate=80_000_000,
                            comment="etaflow eta_oracle A17: event, overflow, overflow, event, event, event"))
    rec = r.recipe("", [source_vi(SRC), log_vi(range(4))])
    r.run("split1", rec, "main", {"f": {"file": f, "format": PQ_FORMAT, "cut": cut_split(1)}})
    for n in (1, 2, 3):
        r.run(f"clips{n}", rec, "main", {"f": {"file": f, "format": PQ_FORMAT, "cut": cut_clips(n)}})


# =============================================================================================
# 4. extra semantics pinned down for etaflow's ETA mode
# =============================================================================================

def _tie_recipe(r: Recorder, label: str, n_rfiles: int, vchns) -> str:
    rfiles = [f"RFILE(f{i},[{2 * i},{2 * i + 1}])" for i in range(n_rfiles)]
    emits = "\n".join(f"    emit({v},100)" for v in vchns)
    entries = [source_vi(*rfiles), log_vi(list(range(2 * n_rfiles)) + list(vchns))]
    if vchns:
        entries.append(vi("gen", "a:\n" + emits + "\n", edges=[("a", "a", "0")]))
    return r.recipe(f"_{label}", entries)


@case("x_tie_order", "Tie order of the merge tree (spec 4.2 table): 1-3 RFILEs (file ids 0..R-1) and V virtual "
      "channels (ids R..) all holding an event at t=100; the log gives the delivery order.")
def _(r):
    # RFILE 0: generator at 0 (emits every virtual channel with delay 100), then 100, then 1000.
    # RFILE i>0: 100, 1000.  All sources tie at t=100.
    plans = [(1, list(range(10, 10 + v))) for v in range(1, 9)]
    plans += [(2, list(range(10, 10 + v))) for v in range(0, 5)]
    plans += [(3, list(range(10, 10 + v))) for v in range(0, 7)]
    plans += [(1, [10, 12]), (2, [10, 13])]  # gaps in the virtual range also get pool leaves
    files = {}
    for i in range(3):
        ev = ([(0, 0)] if i == 0 else []) + [(100, 1), (1000, 1)]
        files[i] = r.qutag(f"_f{i}", ev)
    for n_rf, vch in plans:
        gap = "_gap" if vch and (vch[-1] - vch[0] + 1 != len(vch)) else ""
        label = f"r{n_rf}_v{len(vch)}{gap}"
        rec = _tie_recipe(r, label, n_rf, vch)
        r.run(label, rec, "main", {f"f{i}": qsrc(files[i]) for i in range(n_rf)},
              note=f"{n_rf} RFILE(s), virtual channels {vch}: leaves n = {n_rf + (vch[-1] - vch[0] + 1 if vch else 0)}")


@case("x_coincidence_ops", "COINCIDENCE fill/clear(k)/reset and the default (infinite = 2147483647 ps) threshold, "
      "traced after every operation, with 1, 2, 3 windows and one-record windows; clear(INTEGER) fails to compile.")
def _(r):
    cols = ("AbsTime_ps", "flag", "co[0]", "co[1]", "co[2]", "fq", "cq[0]", "cq[1]")
    tr = _coinc_trace(cols=cols, hits=False)
    code = f"""
COINCIDENCE(co,3,flag,40)
COINCIDENCE(cq,2,fq)
INTEGER(ntr)
TABLE(trace,[32,8])
--1-->a:
    co.fill(0)
    cq.fill(0)
{tr}
--2-->a:
    co.fill(1)
    cq.fill(1)
{tr}
--3-->a:
    co.fill(2)
{tr}
--4-->a:
    co.clear(1)
{tr}
--5-->a:
    co.reset()
{tr}
--6-->a:
    co.clear(2)
{tr}
"""
    rec = r.recipe("", [source_vi("RFILE(f,[0,1,2,3,4,5,6])"), vi("coinc", code, edges=[("a", "a", "1,2,3,4,5,6")])])
    ev = [(0, 1), (10, 2), (20, 3), (30, 4), (35, 3), (40, 2), (100, 5), (105, 1), (110, 2), (115, 3), (120, 6),
          (125, 1), (3_000_000_000, 1), (3_000_000_010, 2)]
    f = r.qutag("", ev)
    for k in (1, 2, 3):
        r.run(f"split{k}", rec, "main", {"f": qsrc(f, cut_split(k))})
    r.run("clips1", rec, "main", {"f": qsrc(f, cut_clips(1))})
    probe = r.recipe("_clear_integer", [source_vi(SRC), vi("coinc", """
    COINCIDENCE(co,3,flag,40)
    INTEGER(idx,2)
    a:
        co.clear(idx)
    """, edges=[("a", "a", "1")])])
    r.run("clear_integer_slot", probe, "main", {"f": qsrc(f)}, note="spec 3.7 says the slot may be an INTEGER")


@case("x_hist_modifiers", "HISTOGRAM modifiers with record_all on multi-start clocks (\"time-1\", \"time+64\"), a "
      "modifier using an INTEGER, float bins/width text, record_all on a multi-stop clock, and a 2-D image "
      "histogram img2[ix][iy].record(c5,c6) with INTEGER prefixes.")
def _(r):
    multi = two_state("multi", """
    HISTOGRAM(hm,(100,1,"time-1"))
    HISTOGRAM(hp,(100,4,"time+64"))
    CLOCK(cm,8,1)
    CLOCK(cp,8,1)
    start:
        cm.start()
        cp.start()
    stop:
        cm.stop()
        hm.record_all(cm)
        cp.stop()
        hp.record_all(cp)
    """, "1", "2")
    single = two_state("single", """
    HISTOGRAM(hi,(100,1,"time+off"))
    HISTOGRAM(hf,(1e2,1.6e1))
    INTEGER(off,-3)
    CLOCK(cs)
    start:
        cs.start()
    stop:
        cs.stop()
        hi.record(cs)
        hf.record(cs)
    """, "1", "2")
    mstop = vi("multistop", """
    HISTOGRAM(hs,(20,1))
    CLOCK(ms,1,6)
    --3-->a:
        ms.start()
    --4-->a:
        ms.stop()
        hs.record_all(ms)
    """, edges=[("a", "a", "3,4")])
    image = vi("image", """
    HISTOGRAM(img2,[(8,4),(8,4)],[2,2])
    CLOCK(c5)
    CLOCK(c6)
    INTEGER(ix)
    INTEGER(iy)
    --5-->a:
        c5.start()
        c6.start()
    --6-->a:
        c5.stop()
    --7-->a:
        c6.stop()
        img2[ix][iy].record(c5,c6)
        {{
        iy = (iy + 1) % 2
        if iy == 0:
            ix = (ix + 1) % 2
        }}
    """, edges=[("a", "a", "5,6,7")])
    rec = r.recipe("", [source_vi("RFILE(f,[0,1,2,3,4,5,6,7])"), multi, single, mstop, image])
    ev = [(t, 1) for t in range(0, 60, 10)] + [(64, 2)]
    ev += [(t, 1) for t in range(100, 190, 10)] + [(190, 2), (191, 2)]
    ev += [(300, 3), (301, 4), (305, 4), (310, 4), (298, 4), (320, 3), (318, 4), (330, 4)]
    ev += [(400, 5), (403, 6), (406, 7), (500, 5), (509, 6), (513, 7), (600, 5), (601, 6), (640, 7),
           (700, 5), (731, 6), (702, 7)]
    f = r.qutag("", ev)
    r.run("main", rec, "main", {"f": qsrc(f)})


def _t3_tiny_records():
    """(kind, a, b, c): ('p', input channel, dtime, nsync) or ('o', count) overflow."""
    spec = [("p", 0, 100, 5), ("p", 1, 300, 5), ("p", 0, 781, 6), ("p", 0, 782, 7), ("p", 1, 900, 7),
            ("o", 1), ("p", 0, 0, 3), ("p", 1, 10, 1000), ("o", 3), ("p", 0, 5000, 2), ("p", 1, 1, 2),
            ("o", 0), ("p", 1, 500, 9), ("p", 0, 400, 9), ("p", 0, 20, 1023), ("p", 1, 20, 1023)]
    out = []
    for s in spec:
        out.append(hh_t3(1, 63, 0, s[1]) if s[0] == "o" else hh_t3(0, s[1], s[2], s[3]))
    return np.array(out, dtype=np.uint32), spec


@case("x_clock_t3_lastsync", "CLOCK on a tiny HydraHarp T3 file (sync 12512 ps after truncation): "
      "c.start(LAST_SYNC) + record, (c2,c3).infer_start_from_stop(SYNC), c.start(SYNCS) + record_all, "
      "with the clock values traced per event.")
def _(r):
    recs, spec = _t3_tiny_records()
    f = r.ptu("", ptu_bytes(HH_V2_T3, SYN_PERIOD_S, DT_RES_S, recs, mode=3, sync_rate=79_919_571,
                            comment="etaflow eta_oracle tiny T3 for LAST_SYNC / SYNC / SYNCS"))
    r.manifest["input_description"] = {f: {"records": [list(s) for s in spec],
                                           "legend": "['p', input(0-based), dtime, nsync] or ['o', overflow count]"}}
    last = vi("lastsync", """
    CLOCK(c1)
    HISTOGRAM(t1,(800,16))
    TABLE(tr1,[32,3])
    INTEGER(n1)
    a:
        c1.stop()
        c1.start(LAST_SYNC)
        t1.record(c1)
        {{
        if n1 < 32:
            tr1[n1, 0] = AbsTime_ps
            tr1[n1, 1] = c1_start_rec
            tr1[n1, 2] = c1_stop_rec
        n1 += 1
        }}
    """, edges=[("a", "a", "0")])
    infer = vi("infer", """
    CLOCK(c2)
    CLOCK(c3)
    HISTOGRAM(t2,(3000,16))
    HISTOGRAM(t3,(3000,16))
    TABLE(tr2,[32,4])
    INTEGER(n2)
    --0-->a:
        c3.stop()
    --1-->a:
        c2.stop()
        (c2,c3).infer_start_from_stop(SYNC)
        t2.record(c2)
        t3.record(c3)
        {{
        if n2 < 32:
            tr2[n2, 0] = AbsTime_ps
            tr2[n2, 1] = common_start
            tr2[n2, 2] = c2_start_rec
            tr2[n2, 3] = c3_start_rec
        n2 += 1
        }}
    """, edges=[("a", "a", "0,1")])
    syncs = vi("syncs", """
    CLOCK(cs,4,1)
    HISTOGRAM(ts,(5000,16))
    a:
        cs.start(SYNCS)
        cs.stop()
        ts.record_all(cs)
    """, edges=[("a", "a", "1")])
    rec = r.recipe("", [source_vi("RFILE(f,[0,1,2])"), log_vi(range(3)), last, infer, syncs])
    for k in (1, 3):
        r.run(f"split{k}", rec, "main", {"f": {"file": f, "format": PQ_FORMAT, "cut": cut_split(k)}})


@case("x_lastsync_qutag", "LAST_SYNC on a quTAG file (SYNCRate_pspr = 0): spec 9.3 item 46 says it divides by zero.")
def _(r):
    rec = r.recipe("", [source_vi(SRC), vi("ls", """
    CLOCK(c1)
    HISTOGRAM(t1,(10,1))
    a:
        c1.stop()
        c1.start(LAST_SYNC)
        t1.record(c1)
    """, edges=[("a", "a", "1")])])
    f = r.qutag("", [(10, 1), (20, 1)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("x_integer_assign", "INTEGER assignment and augmented assignment (+=, -=, *=, Python floor // and % on "
      "negatives); '/=' and assignment to an undeclared name are compile errors.")
def _(r):
    code = """
    INTEGER(x,3)
    INTEGER(y)
    INTEGER(z,10)
    INTEGER(w)
    INTEGER(q)
    --1-->a:
        x += 2
        y = x * 10 + 1
        z -= 4
        z *= 3
    --2-->a:
        w = (0 - AbsTime_ps) % 7
        q = (0 - AbsTime_ps) // 7
    """
    good = r.recipe("", [source_vi(SRC), vi("ints", code, edges=[("a", "a", "1,2")])])
    div = r.recipe("_div", [source_vi(SRC), vi("ints", "INTEGER(x,8)\na:\n    x /= 2\n", edges=[("a", "a", "1,2")])])
    undecl = r.recipe("_undeclared", [source_vi(SRC), vi("ints", "a:\n    v = 1\n", edges=[("a", "a", "1,2")])])
    f = r.qutag("", [(5, 1), (6, 1), (100, 2)])
    r.run("main", good, "main", {"f": qsrc(f)})
    r.run("div_assign", div, "main", {"f": qsrc(f)})
    r.run("undeclared_target", undecl, "main", {"f": qsrc(f)})


@case("x_emit_integer_args", "emit with INTEGER arguments: repeat = flag (0/1, the conditional-emit idiom), "
      "INTEGER channel (VFILE declared) and INTEGER waittime, INTEGER repeat 3 with period 4.")
def _(r):
    code = """
    VFILE(10)
    VFILE(11)
    INTEGER(flag)
    INTEGER(target,10)
    INTEGER(dly,7)
    INTEGER(rep,3)
    --1-->a:
        flag = 1 - flag
        emit(9,0,0,flag)
        emit(target,dly)
        emit(12,0,4,rep)
    --2-->a:
        target = 21 - target
    """
    rec = r.recipe("", [source_vi(SRC), log_vi([1, 2, 3, 9, 10, 11, 12]),
                        vi("em", code, edges=[("a", "a", "1,2")])])
    f = r.qutag("", [(0, 1), (100, 1), (150, 2), (200, 1), (300, 1), (1000, 3)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("x_cancel_emit", "cancel_emit(9) drops the pending head and the FIFO of virtual channel 9 (delay-100 copies "
      "of chn 1); cancel on an idle channel is harmless.")
def _(r):
    code = """
    --1-->a:
        emit(9,100)
    --2-->a:
        cancel_emit(9)
    """
    rec = r.recipe("", [source_vi(SRC), log_vi([1, 2, 3, 9]), vi("cx", code, edges=[("a", "a", "1,2")])])
    f = r.qutag("", [(0, 1), (10, 1), (20, 1), (50, 2), (60, 1), (70, 1), (300, 2), (310, 2), (320, 1),
                     (500, 3)])
    r.run("main", rec, "main", {"f": qsrc(f)})


@case("x_fifo_window_reset", "Virtual-channel FIFOs are emptied at every mainloop entry: a 1000 ps delay line on "
      "20 events 100 ps apart, split into 1/2/3/7 windows and one-record windows (queued copies lost, head kept).")
def _(r):
    rec = r.recipe("", [source_vi(SRC), log_vi([1, 2, 9]), vi("dl", "a:\n    emit(9,1000)\n", edges=[("a", "a", "1")])])
    f = r.qutag("", [(100 * i, 1) for i in range(20)] + [(10_000, 2)])
    for k in (1, 2, 3, 7):
        r.run(f"split{k}", rec, "main", {"f": qsrc(f, cut_split(k))})
    r.run("clips1", rec, "main", {"f": qsrc(f, cut_clips(1))})


VFILE_CODE = "VFILE(9,4)\na:\n    emit(9,1000)\n"


@case("x_vfile_capacity", "VFILE(9,4): a FIFO of 4 slots holds 3 queued events plus the pool head, so 4 pending "
      "emissions are all delivered.")
def _(r):
    rec = r.recipe("", [source_vi(SRC), log_vi([1, 2, 9]), vi("dl", VFILE_CODE, edges=[("a", "a", "1")])])
    f = r.qutag("", [(i, 1) for i in range(4)] + [(5000, 2)])
    r.run("pending4", rec, "main", {"f": qsrc(f)})


@case("x_vfile_overflow", "VFILE(9,4) with 5 pending emissions: ETA prints 'Buffer overflow!' and spins forever "
      "(recorded as a timeout).", timeout=HANG_TIMEOUT)
def _(r):
    rec = r.recipe("", [source_vi(SRC), log_vi([1, 2, 9]), vi("dl", VFILE_CODE, edges=[("a", "a", "1")])])
    f = r.qutag("", [(i, 1) for i in range(5)] + [(5000, 2)])
    r.run("pending5", rec, "main", {"f": qsrc(f)})


@case("x_stop_with_source_false", "eta.run(..., stop_with_source=False) with a finite source (spec 4.6: crashes "
      "with AttributeError when the source is exhausted).")
def _(r):
    rec = r.recipe("", [source_vi(SRC), log_vi([1])])
    f = r.qutag("", [(10, 1), (20, 1)])
    r.run("main", rec, "main", {"f": qsrc(f)}, steps=[{"call": "run", "options": {"stop_with_source": False}}])


@case("z_oracle_opt3_artifacts", "NOT ETA semantics - documents why the oracle runs with NUMBA_OPT=0: with numba's "
      "default NUMBA_OPT=3 this ETA install miscompiles (the A10 abort recipe processes every event and reads "
      "stale times: x=4, seen=0, after=10 instead of x=2, seen=after=INF) and spins forever on a 12-event file "
      "when the group never writes an array.", timeout=HANG_TIMEOUT, env={"NUMBA_OPT": "3"})
def _(r):
    ab = r.recipe("_abort", [source_vi(SRC), *ABORT_VIS])
    fa = r.qutag("_abort", [(10, 1), (20, 2), (30, 1), (40, 1)])
    r.run("abort_opt3", ab, "main", {"f": qsrc(fa)}, note="compare a10_abort (NUMBA_OPT=0, matches spec A10)")
    rec = r.recipe("", [source_vi(SRC), vi("count", "INTEGER(x)\na:\n    x += 1\n", edges=[("a", "a", "1")])])
    one = r.qutag("_1event", [(10, 1)])
    f = r.qutag("_12events", [(10 * i, 1) for i in range(12)])
    r.run("one_event_opt3", rec, "main", {"f": qsrc(one)})
    r.run("twelve_events_opt3", rec, "main", {"f": qsrc(f)}, note="hangs at NUMBA_OPT=3; x=12 at NUMBA_OPT=0")


# ---------------------------------------------------------------------------------------------
# parent: run every case in a child with a time limit; index and README
# ---------------------------------------------------------------------------------------------

def child_main(name: str, out: pathlib.Path) -> int:
    fn, checks, _, _ = CASES[name]
    r = Recorder(name, checks, out)
    fn(r)
    r.finish()
    return 0


def _finalize_failed_child(name: str, out: pathlib.Path, outcome: str, detail: dict) -> None:
    path = out / f"{name}.json"
    if path.exists():
        m = json.loads(path.read_text(encoding="utf-8"))
    else:
        m = {"case": name, "checks": CASES[name][1], "files": [], "runs": []}
    m["status"] = outcome
    m["child"] = detail
    for run in m["runs"]:
        if run.get("status") == "running":
            run["status"] = outcome
            for st in run.get("steps", []):
                if st.get("status") == "running":
                    st["status"] = outcome
    write_json(path, m)
    if not (out / f"{name}.npz").exists():
        save_npz(out / f"{name}.npz", {})


def run_case(name: str, out: pathlib.Path, timeout: float | None, numba_opt: str) -> str:
    limit = timeout or CASES[name][2]
    env = dict(os.environ, NUMBA_OPT=numba_opt, PYTHONHASHSEED="0")
    env.update(CASES[name][3])
    with tempfile.TemporaryFile() as log:
        t0 = time.time()
        p = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "--child", name,
                              "--out", str(out)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env=env)
        try:
            rc = p.wait(timeout=limit)
            outcome = None if rc == 0 else "crashed"
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            rc, outcome = None, "timeout"
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if outcome:
        lines = [re.sub(r"\b(0x)?[0-9a-f]{8,}\b", "<address>", ln) for ln in text.splitlines() if ln.strip()]
        detail = {"returncode": rc, "time_limit_s": limit, "output_tail": lines[-12:]}
        _finalize_failed_child(name, out, outcome, detail)
        if outcome == "crashed" and "Traceback" in text:
            print(text, file=sys.stderr)
    m = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    print(f"{name:28s} {m['status']:17s} {time.time() - t0:6.1f}s", flush=True)
    return m["status"]


def _describe_array(a: np.ndarray, name: str, st: dict) -> str:
    if name == "log" and a.ndim == 2 and "nlog" in st["results"]:
        n = min(st["results"]["nlog"]["value"], len(a))
        return "log (t,chn,fileid)=" + " ".join(f"({r[0]},{r[1]},{r[2]})" for r in a[:n].tolist())
    if a.dtype.kind not in "iu":
        return f"{name}: {a.dtype}{list(a.shape)}"
    nz = np.argwhere(a)
    if a.ndim == 2 and name.startswith(("trace", "tr")) and a.shape[0] <= 64:
        rows = a[np.any(a != 0, axis=1)]
        return f"{name} rows=" + " ".join("(" + ",".join(str(x) for x in r) + ")" for r in rows.tolist())
    if 0 < len(nz) <= 24:
        cells = ", ".join((str(int(i[0])) if len(i) == 1 else str(tuple(int(x) for x in i))) + f":{int(a[tuple(i)])}"
                          for i in nz)
        return f"{name}{{{cells}}}"
    return f"sum({name})={int(a.sum())} (nonzero {len(nz)})"


def summarize_run(run: dict, z) -> str:
    if run["status"] not in ("ok", "error"):
        return "**" + run["status"] + "**" + (": " + run["error"]["message"][:100] if "error" in run else "")
    parts = []
    for i, st in enumerate(run["steps"]):
        if st["status"] != "ok":
            parts.append(f"step{i} **{st['status']}**" +
                         (f" ({st['error']['type']}: {st['error']['message'][:80]})" if "error" in st else ""))
            continue
        bits = []
        for k, v in st["results"].items():
            if v["type"] == "Clip":
                bits.append(f"{k}.get_pos()={v.get('get_pos')}")
            elif v["type"] == "integer":
                bits.append(f"{k}={v['value']}")
            elif v["type"] == "array":
                bits.append(_describe_array(z[v["npz"]], k, st))
        parts.append("; ".join(bits))
    return " | ".join(parts)


README_HEAD = """# ETA oracle fixtures

Results of the **original ETA 0.9.9 engine** (`etabackend` from PyPI, run as a black box) on the real files
in `../shared/data` and on small inputs written here, so etaflow's tests can check its ETA-compatible
mode without ETA installed. Everything in this folder is generated by

    /work/eta-venv/bin/python scripts/eta_oracle.py --out tests/fixtures/eta_oracle

(see the script's docstring for setting up the side environment). Do not edit by hand.

ETA runs with `NUMBA_OPT=0`: with the numba/llvmlite that `etabackend==0.9.9` installs today, numba's
default -O3 miscompiles ETA's event loop (hangs, and `abort()` ignored); see `z_oracle_opt3_artifacts`,
the only case run at -O3. Its results are **not** ETA semantics and must not be used as expectations.

## Layout

Per case `NAME`:

* `NAME.json` - manifest. Keys: `case`, `checks` (what the case pins down, one sentence), `status`
  (`ok`, `ok_with_failures` = some run compiled/ran with an error that is itself the recorded result,
  `timeout` = ETA hung and was killed, `crashed`), `files` (inputs and recipes of this case in this
  folder), `runs`.
* Each run: `label`, `recipe` (a path starting with `../shared/` is relative to the repository root,
  anything else is a file in this folder), `group`, `sources` = `{RFILE name: {file, format, cut,
  eta_header}}` where `format` is the code passed to ETA (-1 = auto-detect, 0 = PTU, 4 = quTAG binary),
  `cut` is `{"method": "split_file", "cuts": k}` (= `eta.split_file(file, k, format=...)`) or
  `{"method": "clips", "read_events": n}` (= `eta.clips(file, read_events=n, format=...)`), and
  `eta_header` is what ETA parsed from the header (`headeroffset`, `TTRes_pspr`, `DTRes_pspr`,
  `SYNCRate_pspr`, `BytesofRecords`, `RecordType`). `status`: `ok`, `compile_error` (with `error`),
  `error` (a step raised), `timeout`, `crashed`.
* `steps`: the ETA calls made on one task, in order: `{"call": "run"}` = `eta.run(sources,
  group=..., return_task=True, **options)`, `{"call": "resume"}` = the same with `resume_task=<task>`
  (the same source generators are passed again). Each step has `result_keys` (every key ETA returned,
  after its name filter) and `results`: Clips as `{"get_pos", "fields"}`, INTEGERs as `{"value",
  "npz"}`, arrays as `{"npz", "dtype", "shape", "sum", "nonzero"}`.
* `NAME.npz` - every array and INTEGER ETA returned, keyed `<run label>.s<step>.<result name>`
  (arrays are copies taken right after each call: ETA's result dicts alias live task state).
* Event logs: many micro recipes contain a `logger` VI whose embedded code writes
  `(AbsTime_ps, chn, fileid)` of every event it sees, in processing order, into `TABLE log[64,3]`
  and counts them in INTEGER `nlog` (rows beyond `nlog` are zero).

## Cases
"""


def write_index_and_readme(out: pathlib.Path) -> int:
    cases, total = [], 0
    files = sorted(p for p in out.iterdir() if p.is_file())
    for p in files:
        total += p.stat().st_size
    lines = [README_HEAD]
    for name in CASES:
        path = out / f"{name}.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text(encoding="utf-8"))
        own = [f"{name}.json", f"{name}.npz"] + m.get("files", [])
        size = sum((out / f).stat().st_size for f in own if (out / f).exists())
        cases.append({"case": name, "status": m["status"], "checks": m["checks"], "bytes": size,
                      "runs": [r["label"] for r in m["runs"]]})
        lines.append(f"### `{name}` ({m['status']})\n\n{m['checks']}\n")
        ins = sorted({s["file"] for r in m["runs"] for s in r["sources"].values()})
        recs = sorted({r["recipe"] for r in m["runs"]})
        lines.append("Inputs: " + ", ".join(f"`{x}`" for x in ins) + "  ")
        lines.append("Recipes: " + ", ".join(f"`{x}`" for x in recs) + "\n")
        z = np.load(out / f"{name}.npz")
        for r in m["runs"]:
            lines.append(f"* `{r['label']}`: {summarize_run(r, z)}")
        lines.append("")
    write_json(out / "index.json", {"cases": cases, "note": "sizes in bytes; regenerate with scripts/eta_oracle.py"})
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and p.name != "README.md")
    lines.append(f"Total size of the fixture folder (without this README): {total} bytes.\n")
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return sum(p.stat().st_size for p in out.iterdir() if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "fixtures" / "eta_oracle")
    ap.add_argument("--only", nargs="*", help="run only cases whose name starts with one of these")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=None, help="override every case's time limit (s)")
    ap.add_argument("--numba-opt", default="0", help="NUMBA_OPT for the ETA children (see docstring)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.list:
        for n, (_, checks, _, _) in CASES.items():
            print(f"{n:28s} {checks}")
        return 0
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.child:
        return child_main(a.child, out)
    names = [n for n in CASES if not a.only or any(n.startswith(p) for p in a.only)]
    if not a.only:  # full regeneration: drop stale files of this folder
        for p in out.iterdir():
            if p.is_file():
                p.unlink()
    else:
        for n in names:
            for p in out.glob(f"{n}*"):
                if p.is_file() and (p.name.split(".")[0] == n or p.name.startswith(n + "_")):
                    p.unlink()
    if a.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(a.jobs) as ex:
            statuses = list(ex.map(lambda n: run_case(n, out, a.timeout, a.numba_opt), names))
    else:
        statuses = [run_case(n, out, a.timeout, a.numba_opt) for n in names]
    total = write_index_and_readme(out)
    print(f"fixture folder {out}: {total} bytes")
    rc = 0
    if total >= MAX_FIXTURE_BYTES:
        print(f"ERROR: fixtures exceed {MAX_FIXTURE_BYTES} bytes", file=sys.stderr)
        rc = 1
    crashed = [n for n, st in zip(names, statuses) if st == "crashed"]
    if crashed:  # a crash is never an expected outcome (assertions, bugs in this script)
        print(f"ERROR: cases crashed: {crashed}", file=sys.stderr)
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
