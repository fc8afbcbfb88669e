"""Engine throughput: ETA's test Correlation recipe (group HHT2) and the Lifetime recipe on
synthetic files of ``--records`` records, etaflow (eta and exact modes) against the original ETA
when it is installed in a side environment (``--eta-python``, default ``eta-venv/bin/python``
beside the repo or ``$ETA_PYTHON``), in the same run.

    python benchmarks/engine.py [--records 50e6] [--recipes ../shared/eta-reference/recipes]

Prints records/s, the ratio to ETA, compile time (cold cache and warm cache, each in a fresh
process) and peak memory, for the full file and for a file a fifth of its size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_files(n: int, folder: str) -> dict:
    from etaflow.formats import _pq_encode as E
    from etaflow.formats.picoquant import PtuRecordType, write_ptu
    os.makedirs(folder, exist_ok=True)
    out = {}
    for kind in ("t2", "t3"):
        for size in (n, n // 5):
            path = os.path.join(folder, f"engine-{kind}-{size}.ptu")
            out[(kind, size)] = path
            if os.path.exists(path):
                continue
            rng = np.random.default_rng(size)
            # ~385 k photons/s on two detectors, like ETA's HydraHarp test file
            ticks = np.cumsum(rng.geometric(1 / 2.6e6, size).astype(np.int64))
            chans = rng.integers(1, 3, size)
            if kind == "t2":
                write_ptu(path, E.encode_t2(ticks, chans), PtuRecordType.HydraHarp2T2, 1e-12)
            else:
                period = 12_512.587663189168
                nsync = (ticks / period).astype(np.int64)
                dtime = np.minimum(rng.exponential(1500, size) // 16, 779).astype(np.int64)
                recs = E.encode_t3(nsync, dtime, chans - 1)
                write_ptu(path, recs, PtuRecordType.HydraHarp2T3, period * 1e-12, 16e-12)
    return out


# One child program for both engines (they run in different Python environments); LOAD is
# replaced by the engine's import and recipe loading.
CHILD = r"""
import json, sys, time
def peak_mb():   # VmHWM: ru_maxrss would include the parent's peak (kept across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
recipe, group, rfile, path, repeats, mode = sys.argv[1:7]
LOAD
t1 = time.perf_counter()
eta.run({rfile: eta.clips(path, read_events=1000)}, group=group, max_autofeed=1)   # compiles
t2 = time.perf_counter()
runs = []
for _ in range(int(repeats)):
    t3 = time.perf_counter()
    r = eta.run({rfile: eta.clips(path)}, group=group)
    runs.append(time.perf_counter() - t3)
print(json.dumps({"startup_s": t2 - t0, "compile_s": t2 - t1, "run_s": min(runs),
                  "peak_mb": peak_mb(),
                  "sum": int(sum(int(v.sum()) for k, v in r.items() if hasattr(v, "sum")))}))
"""
ETAFLOW_CHILD = CHILD.replace("LOAD", "from etaflow.eta import ETA\neta = ETA(recipe, mode=mode)")
ETA_CHILD = CHILD.replace("LOAD", "from etabackend.eta import ETA\neta = ETA()\n"
                                  "eta.load_recipe(json.load(open(recipe)))")


def child(python, code, args, env=None):
    out = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=float, default=50e6)
    p.add_argument("--dir", default="/tmp/etaflow-bench")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per engine and file; the fastest counts (a shared machine is noisy)")
    p.add_argument("--recipes", default=os.path.join(HERE, "..", "..", "shared", "eta-reference",
                                                     "recipes"))
    p.add_argument("--eta-python", default=os.environ.get("ETA_PYTHON") or
                   os.path.join(HERE, "..", "..", "eta-venv", "bin", "python"))
    a = p.parse_args()
    n = int(a.records)
    rep = str(max(1, a.repeat))
    files = make_files(n, a.dir)
    have_eta = os.path.exists(a.eta_python)
    jobs = [("Correlation (HHT2)", "tests-Correlation.eta", "HHT2", "timetagger1", "t2"),
            ("Lifetime", "Lifetime.eta", "compile", "UniBuf1", "t3")]
    cache = tempfile.mkdtemp(prefix="etaflow-cache-")
    env = dict(os.environ, ETAFLOW_CACHE=cache)
    print(f"{n:,} records per file, one core, page cache warm; ETA: "
          f"{'found at ' + a.eta_python if have_eta else 'not installed (no ratio)'}")
    print(f"{'recipe':20} {'engine':14} {'rec/s':>10} {'ratio':>7} {'compile':>9} {'startup':>9} "
          f"{'peak MB':>8} {'peak MB 1/5':>11}")
    for label, rfile_name, group, rfile, kind in jobs:
        recipe = os.path.join(a.recipes, rfile_name)
        big, small = files[(kind, n)], files[(kind, n // 5)]
        eta_rate = None
        if have_eta:
            r = child(a.eta_python, ETA_CHILD, [recipe, group, rfile, big, rep, "eta"])
            rs = child(a.eta_python, ETA_CHILD, [recipe, group, rfile, small, "1", "eta"])
            eta_rate = n / r["run_s"]
            print(f"{label:20} {'ETA 0.9.9':14} {eta_rate / 1e6:8.1f} M {'1.0x':>7} "
                  f"{r['compile_s']:8.2f}s {r['startup_s']:8.2f}s {r['peak_mb']:8.0f} "
                  f"{rs['peak_mb']:11.0f}")
        for mode in ("eta", "exact"):
            shutil.rmtree(cache, ignore_errors=True)
            cold = child(sys.executable, ETAFLOW_CHILD, [recipe, group, rfile, big, "1", mode], env)
            warm = child(sys.executable, ETAFLOW_CHILD, [recipe, group, rfile, big, rep, mode], env)
            small_r = child(sys.executable, ETAFLOW_CHILD, [recipe, group, rfile, small, "1", mode],
                            env)
            rate = n / warm["run_s"]
            ratio = f"{rate / eta_rate:.1f}x" if eta_rate else "-"
            print(f"{label:20} {'etaflow ' + mode:14} {rate / 1e6:8.1f} M {ratio:>7} "
                  f"{cold['compile_s']:8.2f}s {warm['startup_s']:8.2f}s {warm['peak_mb']:8.0f} "
                  f"{small_r['peak_mb']:11.0f}")
    shutil.rmtree(cache, ignore_errors=True)
    print("compile = first run on 1000 records with a cold compile cache (ETA: always cold); "
          "startup = import + recipe + first run, fresh process, warm cache")


if __name__ == "__main__":
    main()
