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
