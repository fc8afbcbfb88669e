"""Every recipe shipped with ETA 0.9.9 either compiles and runs, or fails with a RecipeError that
names the problem (the VI, the line and what is wrong)."""

from __future__ import annotations

import numpy as np
import pytest

import etaflow as ef
from etaflow.eta import ETA
from etaflow.sim import simulate_file

from conftest import shared_file

HH_T2 = "data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres"
QUTAG = "data/qutag/19_qutag_80MHz_HBT_sync_filtered.qutag"

# recipe file -> {group: data kind}
RUNNABLE = {
    "Correlation.eta": {"HHT2": "t2", "HHT3": "t3", "quTAG": "qutag"},
    "tests-Correlation.eta": {"HHT2": "t2", "HHT3": "t3", "quTAG": "qutag"},
    "Correlation-hydraharp.eta": {"T2": "t2", "T3": "t3"},
    "Correlation-qutag.eta": {"quTAG": "qutag"},
    "Countrate.eta": {"compile": "t2"},
    "Countrate-hydraharp.eta": {"hydraharp": "t2"},
    "Countrate-qutag.eta": {"qutag": "qutag"},
    "Lifetime.eta": {"compile": "t3"},
    "Lifetime-hydraharp.eta": {"hydraharp": "t3"},
    "Lifetime-qutag.eta": {"quTAG": "qutag"},
    "Oscilloscope_QuTAG.eta": {"compile": "qutag"},
    "Multi_Source_Correlation.eta": {"quTAG": "two-eventech"},
    "Correlation-hydraharp-headerless.eta": {"T2": "headerless-t2"},
}
BROKEN = {   # recipe -> (group or None, text the RecipeError must contain)
    "Two-Time_Correlation.eta": ("compile", "COINCIDENCE flag_name '4' must be a name"),
    "Demonstration.eta": (None, "'eta_index_table' is missing"),
    "unnamed.eta": (None, "'eta_index_table' is missing"),
    "tests-CheckDelayLineRecipe.eta": ("compile", "getitem(int64"),
}


@pytest.fixture(scope="module")
def t3_file(tmp_path_factory):
    return simulate_file(tmp_path_factory.mktemp("t3") / "t3.ptu", kind="hh-t3", duration_s=0.02)


def _sources(eta, kind, rfiles, t3_file, tmp_path):
    if kind == "t2":
        return {rfiles[0]: eta.split_file(shared_file(HH_T2), cuts=3)}
    if kind == "t3":
        return {rfiles[0]: eta.split_file(t3_file, cuts=3)}
    if kind == "qutag":
        return {rfiles[0]: eta.split_file(shared_file(QUTAG), cuts=3)}
    if kind == "two-eventech":
        # the recipe reads Eventech ET A033 files (inputs A, B -> channels 0, 1; the second
        # RFILE adds 2), written here from simulated detections
        from etaflow.formats.eventech import write_eventech
        from etaflow.sim import hbt_events
        paths = []
        for k in range(2):
            t, det, _ = hbt_events(0.02, seed=5 + k, emission_prob=0.3)
            p = tmp_path / f"et{k}.bin"
            write_eventech(p, t + 1_000_000_000, det - 1)
            paths.append(p)
        return {rfiles[0]: eta.clips(paths[0], format=ef.FORMAT_ET_A033),
                rfiles[1]: eta.clips(paths[1], format=ef.FORMAT_ET_A033)}
    if kind == "headerless-t2":
        info = ef.open_source(shared_file(HH_T2))
        raw = tmp_path / "raw.bin"
        raw.write_bytes(shared_file(HH_T2).read_bytes()[info.data_offset:])
        clip = ef.Clip()
        clip.TTRes_pspr, clip.DTRes_pspr, clip.SYNCRate_pspr = 1, 1, 1
        clip.BytesofRecords, clip.RecordType = 4, 0x01010204
        return {rfiles[0]: eta.clips(raw, modify_clip=clip, read_events=100_000)}
    raise AssertionError(kind)


CASES = [(r, g, k) for r, groups in sorted(RUNNABLE.items()) for g, k in sorted(groups.items())]


@pytest.mark.parametrize("mode", ["eta", "exact"])
@pytest.mark.parametrize("recipe,group,kind", CASES, ids=[f"{r}:{g}" for r, g, _ in CASES])
def test_shipped_recipe_runs(recipe, group, kind, mode, t3_file, tmp_path):
    eta = ETA(shared_file("eta-reference/recipes/" + recipe), mode=mode)
    task = eta.create_task(group)
    rfiles = [r[0] for r in task.program.rfiles]
    r = eta.run(_sources(eta, kind, rfiles, t3_file, tmp_path), group=group)
    hists = {k: v for k, v in r.items() if isinstance(v, np.ndarray)}
    assert hists, f"no histogram in {list(r)}"
    assert sum(int(v.sum()) for v in hists.values()) > 0
    for name in rfiles:
        assert isinstance(r[name], ef.Clip) and r[name].get_pos() > 0


def test_simulation_recipe_runs_without_a_file():
    eta = ETA(shared_file("eta-reference/recipes/Simulation.eta"), mode="eta")
    eta.recipe.set_parameter("syncs", "20000")
    eta.load_recipe()
    r = eta.run(None, group="main", stop_with_source=False)
    assert int(r["sync_counter"]) == 20000
    assert r["h1"].sum() > 0 and r["h2"].sum() > 0


@pytest.mark.parametrize("recipe", sorted(BROKEN))
def test_broken_recipes_fail_with_a_located_recipe_error(recipe, tmp_path):
    group, text = BROKEN[recipe]
    path = shared_file("eta-reference/recipes/" + recipe)
    with pytest.raises(ef.RecipeError, match=text.replace("(", r"\(").replace("[", r"\[")) as e:
        eta = ETA(path, mode="eta")
        eta.run({"x": eta.clips(shared_file(HH_T2))}, group=group)
    if group is not None:
        assert e.value.vi is not None and e.value.line is not None


def test_file_events_on_virtual_channels_are_refused_in_exact_mode():
    """quTAG channel 5 (the sync input) + RFILE offset 2 lands on virtual channel 7 of
    Multi_Source_Correlation: ETA mixes the two silently; exact mode says so."""
    q = shared_file(QUTAG)
    ex = ETA(shared_file("eta-reference/recipes/Multi_Source_Correlation.eta"), mode="exact")
    with pytest.raises(ef.RunError, match="channel 7, which is one of the group's virtual"):
        ex.run({"timetagger1": ex.clips(q), "timetagger2": ex.clips(q)}, group="quTAG")
    et = ETA(shared_file("eta-reference/recipes/Multi_Source_Correlation.eta"), mode="eta")
    r = et.run({"timetagger1": et.clips(q), "timetagger2": et.clips(q)}, group="quTAG")
    assert r["h3"].sum() > 0            # ETA mode reproduces ETA, mix-up included
