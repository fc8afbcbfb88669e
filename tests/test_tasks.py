"""Tasks: pickling and resuming, background runs, aggregation of parallel parts, and the
on-disk compile cache."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np

from etaflow.eta import ETA

from conftest import shared_file

RECIPE = "eta-reference/recipes/tests-Correlation.eta"
HH_T2 = "data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres"


def test_pickled_task_resumes_like_an_uninterrupted_run(tmp_path):
    path = shared_file(HH_T2)
    eta = ETA(shared_file(RECIPE))
    whole = eta.run({"timetagger1": eta.clips(path, read_events=100_000)}, group="HHT2")
    gen = eta.clips(path, read_events=100_000)
    _, task = eta.run({"timetagger1": gen}, group="HHT2", return_task=True, max_autofeed=2)
    blob = pickle.dumps(task)
    fresh = ETA(shared_file(RECIPE))              # as if in another process
    task2 = fresh.create_task("HHT2", resume_task=pickle.loads(blob))
    r = fresh.run({"timetagger1": gen}, resume_task=task2, group="HHT2")
    np.testing.assert_array_equal(r["h3"], whole["h3"])
    np.testing.assert_array_equal(r["h4"], whole["h4"])


def test_clips_list_parts_in_background_sum_to_the_whole():
    """clips_list gives each part exact absolute times; differences across part edges are lost,
    so the sum can miss pairs that span an edge, never more."""
    path = shared_file(HH_T2)
    eta = ETA(shared_file(RECIPE))
    whole = eta.run({"timetagger1": eta.clips(path)}, group="HHT2")
    tasks = [eta.run({"timetagger1": g}, group="HHT2", return_task=True, return_results=False)
             for g in eta.clips_list(path, read_events=50_000, threads=4)]
    total = eta.aggregrate(tasks)
    assert np.all(total["h3"] <= whole["h3"]) and np.all(total["h4"] <= whole["h4"])
    assert whole["h3"].sum() - total["h3"].sum() <= 4      # at most a few pairs at 3 edges
    parts = eta.aggregrate(tasks, sum_results=False, include_timing=True)
    assert len(parts) == 4 and all("eta_compute_time" in p for p in parts)
    assert eta.aggregate is not None


def test_second_process_compiles_nothing(tmp_path):
    code = (
        "import sys, json\n"
        "from etaflow.eta import ETA\n"
        "eta = ETA(sys.argv[1])\n"
        "r = eta.run({'timetagger1': eta.clips(sys.argv[2])}, group='HHT2')\n"
        "task = eta.create_task('HHT2')\n"
        "st = task.mainloop.stats\n"
        "print(json.dumps([st.cache_hits and sum(st.cache_hits.values()),"
        " st.cache_misses and sum(st.cache_misses.values())]))\n")
    env = dict(os.environ, ETAFLOW_CACHE=str(tmp_path / "cache"))
    args = [sys.executable, "-c", code, str(shared_file(RECIPE)), str(shared_file(HH_T2))]
    first = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    second = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    hits1, misses1 = eval(first.stdout.strip().splitlines()[-1])
    hits2, misses2 = eval(second.stdout.strip().splitlines()[-1])
    assert misses1 >= 1                      # the first process compiled the group
    assert hits2 >= 1 and not misses2        # the second loaded it from the disk cache


def test_nearly_sorted_chunks_are_sorted_stably():
    """Exact mode's reorder: the block-wise insertion sort equals a stable argsort on chunks
    with inversions inside blocks, across block edges and far back, and gives up (returns False)
    once the moves exceed its budget."""
    from etaflow.engine.task import _sort_nearly_sorted
    rng = np.random.default_rng(3)
    for n in (1, 2, 31, 32, 33, 65, 1000, 5000):
        t = np.cumsum(rng.integers(0, 5, n)).astype(np.int64)
        swap = rng.integers(0, n, max(1, n // 50))
        t[swap] -= rng.integers(0, 40, len(swap))       # steps back, some across blocks
        c = np.arange(n, dtype=np.int64)      # positions: every stable order is checked
        order = np.argsort(t, kind="stable")
        want_t, want_c = t[order], c[order]
        assert _sort_nearly_sorted(t, c, 4 * n)
        assert np.array_equal(t, want_t) and np.array_equal(c, want_c)
    t = np.arange(100, 0, -1).astype(np.int64)
    assert not _sort_nearly_sorted(t, np.zeros(100, np.uint8), 50)


def test_first_channel_in_the_virtual_range():
    """Exact mode's check that a file delivers nothing on a virtual channel: the first index in
    lo..hi, against a direct scan, for ranges partly or wholly outside 0..255 too."""
    from etaflow.engine.task import _first_in_range
    rng = np.random.default_rng(4)
    for _ in range(3000):
        c = rng.integers(0, 256, rng.integers(0, 80)).astype(np.uint8)
        lo = int(rng.integers(-300, 300))
        hi = int(rng.integers(lo - 2, lo + 400))
        want = next((i for i, x in enumerate(c) if lo <= x <= hi), -1)
        assert _first_in_range(c, lo, hi) == want, (c.tolist(), lo, hi)
