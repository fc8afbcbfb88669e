"""`etaflow info` on every shared file gives the figures of ../shared/data/README.md."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etaflow.info import file_info

from conftest import shared_file

# file -> (records, channels (ETA numbers), markers, resolution ps, sync period ps, duration s)
EXPECTED = {
    "picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres":
        (409_482, {"1": 159_298, "2": 224_721}, 0, 1.0, None, 1.000),
    "picoquant-ptu/libpicoquant_v30_t2.ptu": (435_319, {"1": 305_565}, 0, 1.0, None, 5.000),
    "picoquant-ptu/PTU_Reader_Example_PTU_PicoHarp.ptu":
        (723_240, {"1": 722_402}, 513, 96.97, 12_817.2, 0.273),
    "picoquant-legacy/focuspoint_topfluorPE_2_1_1_1.pt3":
        (986_400, {"1": 482_775, "2": 490_562}, 0, 16.0, 12_800, 10.96),
    "picoquant-legacy/libpicoquant_v20.ht3": (None, None, 0, 16.0, 1_001_100, 10.0),
    "qutag/19_qutag_80MHz_HBT_sync_filtered.qutag":
        (267_801, {"1": 79_314, "2": 94_287, "5": 94_200}, 0, 1.0, None, 5.044),
    "becker-hickl/phconvert_test_noise.spc": (26_111, {"0": 6_114}, 0, None, 9_500, 16.15),
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_info_figures(rel):
    d = file_info(shared_file("data/" + rel))
    records, channels, markers, res, sync, duration = EXPECTED[rel]
    if records is not None:
        assert d["records"] == records
    if channels is not None:
        assert d["channels"] == channels
        assert d["events"] == sum(channels.values()) + d["markers"]
    assert d["markers"] == markers
    if res is not None:
        assert d["resolution_ps"] == pytest.approx(res, rel=1e-3)
    if sync is None:
        assert d["sync_period_ps"] is None
    else:
        assert d["sync_period_ps"] == pytest.approx(sync, rel=1e-3)
    assert d["duration_ps"] / 1e12 == pytest.approx(duration, abs=0.01)


def test_info_json_cli():
    path = shared_file("data/picoquant-ptu/200204_HH400_T2_320MHz_HBT.timeres")
    out = subprocess.run([sys.executable, "-m", "etaflow", "info", str(path), "--json"],
                         capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    for key in ("format", "records", "events", "channels", "markers", "resolution_ps",
                "sync_period_ps", "duration_ps"):
        assert key in d
    assert d["channels"] == {"1": 159_298, "2": 224_721}


def test_info_cli_error_exit_code(tmp_path):
    p = tmp_path / "junk.bin"
    p.write_bytes(b"\x00" * 100)
    out = subprocess.run([sys.executable, "-m", "etaflow", "info", str(p)], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "unidentified time-tag format" in out.stderr
