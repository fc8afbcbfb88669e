"""Decode throughput and peak memory, from the page cache.

    python benchmarks/decode.py [--records 50e6] [--dir /tmp/etaflow-bench]

Writes synthetic HydraHarp T2, HydraHarp T3 and quTAG files of ``--records`` records (once; kept
in ``--dir``), then, each in a fresh subprocess so peak memory is the decoder's own:

* etaflow: ``clips()`` windows of 10 M records -> ``iter_events`` (numba kernel), records/s;
* baseline: a vectorised numpy decoder of the same records (HydraHarp T2 only), records/s;
* peak RSS of the etaflow run for the full file and for a file a fifth of its size
  (bounded memory means the two are about equal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def make_files(n: int, folder: str) -> dict:
    from etaflow.formats import _pq_encode as E
    from etaflow.formats.picoquant import PtuRecordType, write_ptu
    from etaflow.formats.qutag import write_qutag_binary
    os.makedirs(folder, exist_ok=True)
    files = {}
    for kind in ("hh-t2", "hh-t3", "qutag"):
        for size in (n, n // 5):
            path = os.path.join(folder, f"{kind}-{size}.bin")
            files[(kind, size)] = path
            if os.path.exists(path):
                continue
            rng = np.random.default_rng(size)
            gaps = rng.geometric(1 / 3000, size).astype(np.int64)   # ~ 330 M events/s at 1 ps
            ticks = np.cumsum(gaps)
            chans = rng.integers(1, 3, size)
            if kind == "hh-t2":
                write_ptu(path, E.encode_t2(ticks, chans), PtuRecordType.HydraHarp2T2, 1e-12)
            elif kind == "hh-t3":
                recs = E.encode_t3(ticks // 12500, (ticks % 12500) // 16, chans - 1)
                write_ptu(path, recs, PtuRecordType.HydraHarp2T3, 12.5e-9, 16e-12)
            else:
                write_qutag_binary(path, ticks, chans)
            del ticks, chans, gaps
    return files


def run_etaflow(path: str) -> dict:
    import etaflow as ef
    # warm the page cache and the compiled kernels on the first window
    with open(path, "rb") as f:
        while f.read(1 << 26):
            pass
    for clip in ef.clips(path, read_events=1000):
        for _ in ef.iter_events(clip):
            pass
        break
    t0 = time.perf_counter()
    records = events = 0
    kernel_s = 0.0
    for clip in ef.clips(path, read_events=10 * 1024 * 1024):
        records += clip.records()
        k0 = time.perf_counter()
        for t, c in ef.iter_events(clip, chunk=1 << 20, copy=False):
            events += len(t)
        kernel_s += time.perf_counter() - k0
    wall = time.perf_counter() - t0
    rss_mb = _peak_mb()
    return {"records": records, "events": events, "wall_s": wall, "decode_s": kernel_s,
            "records_per_s": records / wall, "decode_records_per_s": records / kernel_s,
            "peak_rss_mb": rss_mb}


def _peak_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak: it survives exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_numpy_baseline(path: str) -> dict:
    """Vectorised numpy HydraHarp V2 T2 decode: the obvious non-numba implementation."""
    import etaflow as ef
    info = ef.open_source(path)
    t0 = time.perf_counter()
    recs = np.fromfile(path, dtype="<u4", offset=info.data_offset)
    special = recs >> 31
    chan = (recs >> 25) & 0x3F
    tt = (recs & 0x1FFFFFF).astype(np.int64)
    ovf = (special == 1) & (chan == 63)
    ofl = np.cumsum(np.where(ovf, np.where(tt == 0, 1, tt), 0)) * 2**25
    photon = special == 0
    times = (ofl + tt)[photon]
    chans = (chan[photon] + 1).astype(np.uint8)
    wall = time.perf_counter() - t0
    return {"records": len(recs), "events": len(times), "wall_s": wall,
            "records_per_s": len(recs) / wall, "checksum": int(times[-1]) + int(chans[-1])}


def _child(which: str, path: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", which, path], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=float, default=50e6)
    p.add_argument("--dir", default="/tmp/etaflow-bench")
    p.add_argument("--child", nargs=2)
    a = p.parse_args()
    if a.child:
        fn = run_etaflow if a.child[0] == "etaflow" else run_numpy_baseline
        print(json.dumps(fn(a.child[1])))
        return
    n = int(a.records)
    files = make_files(n, a.dir)
    print(f"records per file: {n:,} (small file: {n // 5:,}); 1 core; page cache warm")
    print(f"{'file':8} {'etaflow rec/s':>15} {'kernel rec/s':>15} {'numpy rec/s':>13} "
          f"{'ratio':>6} {'peak MB':>8} {'peak MB (1/5)':>14}")
    for kind in ("hh-t2", "hh-t3", "qutag"):
        big = _child("etaflow", files[(kind, n)])
        small = _child("etaflow", files[(kind, n // 5)])
        base = _child("numpy", files[(kind, n)]) if kind == "hh-t2" else None
        ratio = f"{big['records_per_s'] / base['records_per_s']:.1f}x" if base else "-"
        print(f"{kind:8} {big['records_per_s'] / 1e6:12.0f} M {big['decode_records_per_s'] / 1e6:12.0f} M "
              f"{(base['records_per_s'] / 1e6 if base else float('nan')):10.0f} M {ratio:>6} "
              f"{big['peak_rss_mb']:8.0f} {small['peak_rss_mb']:14.0f}")


if __name__ == "__main__":
    main()
