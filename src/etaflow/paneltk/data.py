"""Analysis results for Script Panels: ``ETAResult`` and ``save_data``.

``ETAResult`` analyses one time-tag file with a recipe group, either the whole file at once or a
growing file window by window (live display during a measurement). A panel subclasses it and
implements ``calculate_result(result)``, which turns etaflow's result dict into
``(xdata, ydata, ...)`` for plotting and saving.

How the analysis is organised:

* one *live task* holds the state of the analysis; every window of the file is fed to it by one
  ``eta.run(..., resume_task=task, max_autofeed=1)``, so it can always take more data later;
* in etaflow's exact mode the engine holds back the newest events (time ordering look-ahead,
  pending delayed copies); the published result comes from a copy of the live task that is run
  to the end of its data, so it always equals a single ``eta.run`` over everything read so far.
  In ETA mode the live task's own result is published (ETA drops pending events anyway).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..clip import Clip

__all__ = ["ETAResult", "save_data"]

log = logging.getLogger("etaflow.frontend")

#: records per window when ``records_per_cut`` is not given (ETA's ``clips`` default)
DEFAULT_WINDOW_RECORDS = 10 * 1024 * 1024
_POLL_S = 0.01


def save_data(xdata, ydata, data_file, result_path, label, header=None):
    """Write ``xdata`` and one or more ``ydata`` columns to a new numbered text file.

    The file is ``result_path/<stem of data_file>_<label>_<NNN>.txt`` with the first unused
    three-digit number from 000 on; ``result_path`` is created if needed. Columns are
    tab-separated (``numpy.savetxt`` number format); ``header`` (e.g. from
    :func:`etaflow.paneltk.utils.info`) is written first, each line prefixed with ``# ``.
    Returns the path of the new file.
    """
    folder = Path(result_path)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(data_file).stem
    table = np.vstack([np.atleast_2d(np.asarray(xdata)), np.atleast_2d(np.asarray(ydata))]).T
    number = 0
    while True:
        target = folder / f"{stem}_{label}_{number:03d}.txt"
        try:
            # "x": never overwrite, even when two saves race for the same number
            with open(target, "x", encoding="utf-8") as out:
                np.savetxt(out, table, delimiter="\t", header="" if header is None else header)
            return target
        except FileExistsError:
            number += 1


def _group_parameters(eta, group) -> dict:
    """The recipe parameters of ``group`` (ETA's ``eta.compilecache_vars[group]``)."""
    cache = getattr(eta, "compilecache_vars", None)
    if isinstance(cache, dict) and group in cache:
        return dict(cache[group])
    recipe = getattr(eta, "recipe", None)
    if recipe is not None and hasattr(recipe, "parameters"):
        return dict(recipe.parameters(group))
    return {}


def _fork(task):
    """An independent copy of a task that can be run on without touching the original.

    Shares what a run only reads (the compiled program and the Clips the task was fed)."""
    fork = getattr(task, "fork", None)
    if callable(fork):
        return fork()
    shared = [getattr(task, "program", None)]
    shared += [getattr(s, "clip", None) for s in getattr(task, "sources", ())]
    memo = {id(obj): obj for obj in shared if obj is not None}
    twin = copy.deepcopy(task, memo)
    twin.mainloop = task.mainloop
    twin.thread = None
    return twin


class ETAResult:
    """Analysis of a (possibly growing) time-tag file with one recipe group.

    Subclass it and implement :meth:`calculate_result`. Arguments (ETA's names and defaults):

    file
        The time-tag file (str or Path).
    group
        The recipe group to run.
    records_per_cut
        Records per analysis window. ``None``: the whole file in windows of 10 Mi records, and
        for a growing file every record that has arrived.
    kernel
        The ``eta`` object of the Script Panel (required).
    timeout
        Seconds an :meth:`update` waits for new records of a growing file before it gives up.
    simulate_growth
        Treat the existing file as if it were growing: every :meth:`run`/:meth:`update` reads
        the next ``records_per_cut`` records.
    run_immediately
        Call :meth:`run` at once.
    modify_clip
        A Clip to read the file with instead of reading its header (e.g. a hand-built Clip for
        headerless files); it is rewound to the first record.
    format
        The file format code (-1: detect).
    timetagger_name
        The name of the group's RFILE.

    After an analysis, ``xdata`` and ``ydata`` (a list, one array per curve) hold what
    ``calculate_result`` returned, ``max_value``/``y_max`` the largest y value and 1.5 times
    it, and ``lastupdate`` the time of the analysis (``time.time()``).
    """

    def __init__(self, file, group, records_per_cut=None, kernel=None, timeout=0.2,
                 simulate_growth=False, run_immediately=True, modify_clip=None, format=-1,
                 timetagger_name="timetagger1"):
        if kernel is None:
            raise ValueError("ETAResult needs the analysis kernel: pass kernel=eta")
        self.logger = log
        self.eta = kernel
        self.file = Path(file)
        self.group = group
        self.records_per_cut = _positive_int_or_none(records_per_cut)
        self.timeout = float(timeout)
        self.modify_clip = modify_clip
        self.format = format
        self.timetagger_name = timetagger_name
        self.vars = _group_parameters(kernel, group)
        self._simulate_growth = bool(simulate_growth)
        self.context = None
        self.lastupdate = 0
        self.xdata = np.zeros(0)
        self.ydata = []
        self.max_value = 0
        self.y_max = 0
        self.set_accumulation_mode()
        self._inspect_file()
        if run_immediately:
            self.run()

    # --- what a subclass provides ---------------------------------------------------------
    def calculate_result(self, result):
        """Turn the result dict of the group into ``(xdata, ydata1, ydata2, ...)``."""
        raise NotImplementedError(
            f"{type(self).__name__}.calculate_result(result) is missing: subclass ETAResult and "
            "return (xdata, ydata, ...) computed from the result dict")

    # --- analysis ---------------------------------------------------------------------------
    def run(self):
        """Analyse the whole file (or, with ``simulate_growth``, the next window)."""
        if self._simulate_growth:
            return self.update()
        return self._run_eta_evaluation()

    def update(self):
        """Analyse the records added since the last window. True if there were any.

        In accumulation mode the new records add to everything analysed so far; in alignment
        mode the result shows the new window alone."""
        return self._update_eta_evaluation()

    def set_accumulation_mode(self):
        self.mode = "accumulation"

    def set_alignment_mode(self):
        self.mode = "align"

    def toggle_mode(self, event=None):
        if self.mode == "accumulation":
            self.set_alignment_mode()
        else:
            self.set_accumulation_mode()

    # --- internals ------------------------------------------------------------------------
    def _inspect_file(self):
        """Set up the Clip that walks through the file, positioned before the first record."""
        if self.modify_clip is not None:
            clip = self.modify_clip
        else:
            clip = Clip()
            clip.parse_header(self.file, self.format)
        if not clip.BytesofRecords:
            raise ValueError("ETAResult: the Clip has BytesofRecords = 0; set the record layout "
                             "of a hand-built Clip (BytesofRecords, RecordType, resolutions)")
        clip.seek(0)
        clip.batch_actualread_length = 0     # an empty window: the next one starts at record 0
        clip.next_RecID_in_batch = 0
        self.cut = clip
        if self._simulate_growth:
            self.existing_records = self.records_per_cut
            self.logger.info("Simulate Growth is activated.")
        else:
            self.existing_records = self._records_after(clip.headeroffset)

    def _records_after(self, byte_offset) -> int:
        try:
            size = os.path.getsize(self.file)
        except OSError:
            return 0
        return max(size - int(byte_offset), 0) // int(self.cut.BytesofRecords)

    def _next_window_start(self) -> int:
        return int(self.cut.fseekpoint) + int(self.cut.batch_actualread_length)

    def _run_eta_evaluation(self):
        """Analyse every record in the file now, from the first one, in a fresh task."""
        per_window = self.records_per_cut or DEFAULT_WINDOW_RECORDS
        task = None
        seek = 0
        while True:
            window = self.eta.clip_file(self.file, modify_clip=self._next_clip(),
                                        read_events=per_window,
                                        seek_event=seek, wait_timeout=0, format=self.format)
            if not window:
                break
            seek = -1
            self.cut = window
            task = self._analyse(window, task)
        if task is None:                      # no records yet: an empty analysis to show
            task = self.eta.create_task(self.group)
        self.context = task
        self._publish(self._results(task))
        return True

    def _update_eta_evaluation(self):
        if self.records_per_cut:
            count, wait = self.records_per_cut, self.timeout
        else:
            count, wait = self._wait_for_records(), 0
        window = self.eta.clip_file(self.file, modify_clip=self._next_clip(), read_events=count,
                                    wait_timeout=wait, format=self.format)
        if not window:
            return False
        self.logger.info("New data available for calculating a new block.")
        self.cut = window
        resume = self.context if self.mode == "accumulation" else None
        self.context = self._analyse(window, resume)
        self._publish(self._results(self.context))
        return True

    def _wait_for_records(self) -> int:
        """Records available after the current window (at most one default window), waiting up
        to ``timeout`` for the first one; at least 1."""
        deadline = time.monotonic() + self.timeout
        while True:
            available = self._records_after(self._next_window_start())
            if available > 0 or time.monotonic() >= deadline:
                return int(min(max(available, 1), DEFAULT_WINDOW_RECORDS))
            time.sleep(_POLL_S)

    def _next_clip(self):
        """A Clip to load the next window into: a copy of the current one, so the window a task
        was fed is never refilled under it (the engine keeps a reference to it)."""
        return self.cut.copy()

    def _analyse(self, window, task):
        """Feed one window to ``task`` (a new task when None); returns the task."""
        return self.eta.run({self.timetagger_name: window}, resume_task=task, group=self.group,
                            return_task=True, return_results=False, background=False,
                            max_autofeed=1)

    def _results(self, task) -> dict:
        """The result dict of everything ``task`` has been fed, pending events included."""
        if getattr(task, "mode", None) != "exact":
            return self.eta.aggregrate([task])
        return self.eta.run(None, resume_task=_fork(task), group=self.group,
                            return_results=True, background=False)

    def _publish(self, result):
        xdata, *ydata = self.calculate_result(result)
        ydata = [np.asarray(y) for y in ydata]
        peak = max((np.amax(y) for y in ydata if y.size), default=0)
        self.xdata = np.asarray(xdata)
        self.ydata = ydata
        self.max_value = peak
        self.y_max = peak * 1.5
        # strictly increasing, so a display can tell every update from the previous one
        self.lastupdate = max(time.time(), self.lastupdate + 1e-6)


def _positive_int_or_none(value):
    if value is None or value == "":
        return None
    value = int(float(value))
    return value if value > 0 else None
