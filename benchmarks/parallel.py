"""Parallel throughput: one core against parts of the file run as background tasks.

    python benchmarks/parallel.py [--records 50e6] [--parts 2 4]

ETA's Correlation recipe (group HHT2) on the synthetic HydraHarp T2 file of benchmarks/engine.py:
one ``eta.run`` over ``eta.clips`` (one core), then ``eta.clips_list`` cut into ``--parts``
parts, each run in the background (the engine releases the GIL) and summed with
``eta.aggregrate``, in the same process, best of ``--repeat``. Prints records/s and the ratio to
one core, and how many pairs the parts lost at their edges (a pair that spans an edge is not
counted; that is clips_list's contract).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from engine import make_files  # noqa: E402


def best_of(repeat, fn):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=float, default=50e6)
    p.add_argument("--dir", default="/tmp/etaflow-bench")
    p.add_argument("--parts", type=int, nargs="+", default=[2, 4])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--mode", default="exact", choices=["exact", "eta"])
    p.add_argument("--recipes", default=os.path.join(HERE, "..", "..", "shared", "eta-reference",
                                                     "recipes"))
    a = p.parse_args()
    from etaflow.eta import ETA
    n = int(a.records)
    path = make_files(n, a.dir)[("t2", n)]
    eta = ETA(os.path.join(a.recipes, "tests-Correlation.eta"), mode=a.mode)
    eta.run({"timetagger1": eta.clips(path, read_events=1000)}, group="HHT2", max_autofeed=1)

    def one_core():
        return eta.run({"timetagger1": eta.clips(path)}, group="HHT2")

    def in_parts(k):
        tasks = [eta.run({"timetagger1": g}, group="HHT2", return_task=True,
                         return_results=False)
                 for g in eta.clips_list(path, read_events=1 << 20, threads=k)]
        return eta.aggregrate(tasks)

    t1, whole = best_of(a.repeat, one_core)
    print(f"{n:,} records, {os.cpu_count()} cores, mode {a.mode}, best of {a.repeat}")
    print(f"{'run':24} {'rec/s':>10} {'ratio':>7} {'pairs lost':>11}")
    print(f"{'one core':24} {n / t1 / 1e6:8.1f} M {'1.0x':>7} {0:>11}")
    total = int(whole["h3"].sum() + whole["h4"].sum())
    for k in a.parts:
        tk, r = best_of(a.repeat, lambda: in_parts(k))
        lost = total - int(r["h3"].sum() + r["h4"].sum())
        print(f"{f'{k} parts, background':24} {n / tk / 1e6:8.1f} M {t1 / tk:6.2f}x {lost:>11}")


if __name__ == "__main__":
    main()
