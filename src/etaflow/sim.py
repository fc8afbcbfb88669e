"""A small photon-statistics simulator: the project's own demo and benchmark data.

``hbt_events`` models a Hanbury Brown-Twiss set-up: a pulsed source (one sync per period) emits at
most one photon per pulse (antibunched, a single emitter) or a Poisson number of photons
(``antibunched=False``), after an exponential delay (the lifetime); a 50:50 beamsplitter sends
each photon to detector 1 or 2 with some efficiency; each detector adds Poisson dark counts and a
Gaussian timing jitter. Everything is vectorised numpy.
"""

from __future__ import annotations

import os

import numpy as np

from .formats import _pq_encode as E
from .formats.picoquant import PtuRecordType, write_ptu

__all__ = ["hbt_events", "simulate_file"]


def hbt_events(duration_s: float = 1.0, *, sync_period_ps: float = 12_500.0,
               emission_prob: float = 0.05, efficiency: float = 0.5, lifetime_ps: float = 1_500.0,
               dark_rate_hz: float = 200.0, jitter_ps: float = 30.0, antibunched: bool = True,
               seed: int = 1):
    """Simulated HBT detections.

    Returns ``(time_ps, detector, pulse)``: sorted int64 detection times, detector 1 or 2, and the
    index of the excitation pulse (sync) that precedes each detection.
    """
    rng = np.random.default_rng(seed)
    n_pulses = int(duration_s * 1e12 / sync_period_ps)
    if antibunched:
        n_emit = rng.binomial(n_pulses, emission_prob)
        pulses = np.sort(rng.choice(n_pulses, size=n_emit, replace=False)) if n_emit < n_pulses \
            else np.arange(n_pulses)
    else:
        per = rng.poisson(emission_prob, n_pulses)
        pulses = np.repeat(np.arange(n_pulses), per)
    keep = rng.random(len(pulses)) < efficiency
    pulses = pulses[keep]
    t = np.round(pulses * sync_period_ps + rng.exponential(lifetime_ps, len(pulses))
                 + rng.normal(0.0, jitter_ps, len(pulses)) + 3 * jitter_ps).astype(np.int64)
    det = rng.integers(1, 3, len(pulses)).astype(np.int64)
    n_dark = rng.poisson(dark_rate_hz * duration_s * 2)
    dark_t = rng.integers(0, int(duration_s * 1e12), n_dark).astype(np.int64)
    dark_d = rng.integers(1, 3, n_dark).astype(np.int64)
    t = np.concatenate([t, dark_t])
    det = np.concatenate([det, dark_d])
    order = np.argsort(t, kind="stable")
    t, det = t[order], det[order]
    pulse = np.floor(t / sync_period_ps).astype(np.int64)
    ok = t >= 0
    return t[ok], det[ok], pulse[ok]


def simulate_file(path, kind: str = "hh-t2", duration_s: float = 1.0, seed: int = 1,
                  **kw) -> str:
    """Write a simulated HBT measurement as ``kind``: 'hh-t2' (HydraHarp V2 T2 PTU, 1 ps, inputs
    1 and 2), 'hh-t3' (HydraHarp V2 T3 PTU, 80 MHz sync, 16 ps bins), 'ph-t3' (PicoHarp T3 PTU),
    or 'qutag' (quTAG binary, detectors on channels 1, 2)."""
    path = os.fspath(path)
    sync_period_ps = kw.pop("sync_period_ps", 12_500.0)
    t, det, pulse = hbt_events(duration_s, sync_period_ps=sync_period_ps, seed=seed, **kw)
    if kind == "hh-t2":
        write_ptu(path, E.encode_t2(t, det), PtuRecordType.HydraHarp2T2, 1e-12)
    elif kind in ("hh-t3", "ph-t3"):
        dres = 16.0 if kind == "hh-t3" else 4.0
        dtime = np.floor((t - pulse * sync_period_ps) / dres).astype(np.int64)
        maxbin = 0x7FFF if kind == "hh-t3" else 0xFFF
        ok = (dtime >= 0) & (dtime <= maxbin)
        chan = det - 1 if kind == "hh-t3" else det
        recs = E.encode_t3(pulse[ok], dtime[ok], chan[ok], picoharp=(kind == "ph-t3"))
        rt = PtuRecordType.HydraHarp2T3 if kind == "hh-t3" else PtuRecordType.PicoHarpT3
        write_ptu(path, recs, rt, sync_period_ps * 1e-12, dres * 1e-12)
    elif kind == "qutag":
        from .formats.qutag import write_qutag_binary
        write_qutag_binary(path, t, det)
    else:
        raise ValueError(f"unknown kind {kind!r}: use hh-t2, hh-t3, ph-t3 or qutag")
    return path
