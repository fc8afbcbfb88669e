"""The ``eta`` object: ETA's Python API (spec 2, 4.8-4.9, 6) on etaflow's engine.

``ETA(mode="exact")`` (the default) gives the physically exact answer; ``ETA(mode="eta")``
reproduces ETA 0.9.9 bit for bit. ``run``/``create_task`` take ``mode=`` to override it per run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import clip as _clip
from .engine.task import DEFAULT_LOOKAHEAD_PS, Task, run_task
from .errors import RecipeError
from .formats import registry as _reg
from .lang.codegen import compile_group_source
from .lang.compile import load_program_module
from .recipe import Recipe

__all__ = ["ETA"]

log = logging.getLogger("etaflow.frontend")


class ETA:
    """Load a recipe, cut files into Clips, run groups, aggregate results."""

    FORMAT_PQ = _reg.FORMAT_PQ
    FORMAT_SI_16bytes = FORMAT_SI = _reg.FORMAT_SI_16bytes
    FORMAT_QT_COMPRESSED = quTAG_FORMAT_COMPRESSED = _reg.FORMAT_QT_COMPRESSED
    FORMAT_QT_RAW = quTAG_FORMAT_BINARY = _reg.FORMAT_QT_RAW
    FORMAT_QT_BINARY = _reg.FORMAT_QT_BINARY
    FORMAT_BH_spc_4bytes = bh_spc_4bytes = _reg.FORMAT_BH_spc_4bytes
    FORMAT_ET_A033 = _reg.FORMAT_ET_A033
    FORMAT_PQ_LEGACY = _reg.FORMAT_PQ_LEGACY

    def __init__(self, recipe=None, mode: str = "exact", lookahead_ps: int = DEFAULT_LOOKAHEAD_PS):
        if mode not in ("exact", "eta"):
            raise ValueError(f"mode must be 'exact' or 'eta', not {mode!r}")
        self.mode = mode
        self.lookahead_ps = lookahead_ps
        self.recipe: Recipe | None = None
        self._programs: dict = {}
        self._callbacks: dict = {}
        self.executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self._stop = threading.Event()     # set by request_stop(): running analyses end soon
        if recipe is not None:
            self.load_recipe(recipe)

    # --- recipes --------------------------------------------------------------------------------
    def load_recipe(self, jsonobj=None, compile: bool = True, update_gui: bool = True):
        if jsonobj is not None:
            self.recipe = jsonobj if isinstance(jsonobj, Recipe) else Recipe(jsonobj)
        self._programs.clear()
        if compile and self.recipe is not None:
            for g in self.recipe.groups():
                self._program(g, self.mode)
        if update_gui:
            self.notify_callback("update-recipe")
        return self.recipe

    def _program(self, group: str, mode: str):
        key = (group, mode)
        if key not in self._programs:
            if self.recipe is None:
                raise RecipeError("no recipe is loaded: call eta.load_recipe(...) first")
            vis = [(e.name, e.graph()) for e in self.recipe.vis(group)]
            if not vis:
                raise RecipeError(f"Group {group!r} is not found: it has no Virtual Instrument "
                                  f"(groups: {', '.join(self.recipe.groups())})")
            prog = compile_group_source(group, vis, self.recipe.parameters(group), mode)
            module = load_program_module(prog.source)
            self._programs[key] = (prog, module)
        return self._programs[key]

    def program_source(self, group: str = "main", mode: str | None = None) -> str:
        """The generated Python of a group (for inspection)."""
        return self._program(group, mode or self.mode)[0].source

    # --- windowing (the documented ETA API) -----------------------------------------------------
    def clip_file(self, filename, modify_clip=None, read_events=0, seek_event=-1, format=-1,
                  wait_timeout=0):
        return _clip.clip_file(filename, modify_clip, read_events, seek_event, format, wait_timeout)

    def clips(self, filename, modify_clip=None, read_events=1024 * 1024 * 10, seek_event=-1,
              format=-1, wait_timeout=0, reuse_clips=True, keep_indexes=None):
        return _clip.clips(filename, modify_clip, read_events, seek_event, format, wait_timeout,
                           reuse_clips, keep_indexes)

    def clips_list(self, filename, read_events=1024 * 1024, format=-1, threads=None):
        return _clip.clips_list(filename, read_events, format, threads or (os.cpu_count() or 1) * 2)

    def split_file(self, filename, modify_clip=None, cuts=1, format=-1, wait_timeout=0,
                   reuse_clips=True, keep_indexes=None):
        return _clip.split_file(filename, modify_clip, cuts, format, wait_timeout, reuse_clips,
                                keep_indexes)

    # --- tasks ----------------------------------------------------------------------------------
    def create_task(self, group: str = "main", resume_task=None, mode: str | None = None):
        if resume_task is not None:
            if group == "main" and resume_task.group != "main":
                group = resume_task.group          # ETA's default group would refuse (bug 51)
            if resume_task.group != group:
                raise ValueError(f"ETA.create_task: the task belongs to group "
                                 f"{resume_task.group!r}, not {group!r}")
            if resume_task.mainloop is None:
                prog, module = self._program(resume_task.group, resume_task.mode)
                resume_task.mainloop = module.mainloop
            log.info("Resuming analysis with compiled Instrument group %s.", group)
            return resume_task
        prog, module = self._program(group, mode or self.mode)
        return Task(prog, module.mainloop, self.lookahead_ps)

    def run(self, sources, resume_task=None, group="main", return_task=False, return_results=True,
            background=None, max_autofeed=0, stop_with_source=True, mode: str | None = None):
        task = self.create_task(group, resume_task, mode)
        self.notify_callback("running")
        if task.thread is not None:
            task.thread.result()
            task.thread = None
        if background is None:
            background = not return_results
        if background:
            task.thread = self.executor.submit(run_task, task, sources, max_autofeed,
                                               stop_with_source, self._stop.is_set)
        else:
            run_task(task, sources, max_autofeed, stop_with_source, self._stop.is_set)
        if not return_task and not return_results:
            raise ValueError("ETA.run: set return_task or return_results, or nothing is returned")
        if return_results:
            results = self.aggregrate([task])
            return (results, task) if return_task else results
        return task

    def aggregrate(self, list_of_tasks, sum_results=True, include_timing=False):
        """Results of finished tasks; summed (new arrays, never aliasing task state) or a list."""
        dicts = []
        for task in list_of_tasks:
            if task.thread is not None:
                task.thread.result()
                task.thread = None
            d = task.results()
            if include_timing:
                d["eta_total_time"] = time.time() - (task.timing[0] or time.time())
                d["eta_compute_time"] = task.timing[1]
            dicts.append(d)
        log.info("ETA.run: Analysis is finished.")
        self.notify_callback("paused")
        if not sum_results:
            return dicts
        if not dicts:
            return {}
        out = dict(dicts[0])
        for d in dicts[1:]:
            for k, v in d.items():
                if k in ("eta_total_time", "eta_compute_time"):
                    continue
                if isinstance(v, np.ndarray) and k in out:
                    out[k] = out[k] + v
                elif isinstance(v, (int, float, np.integer, np.floating)) and k in out \
                        and not isinstance(v, bool):
                    out[k] = out[k] + v
        if include_timing:
            out["max_eta_total_time"] = max(d["eta_total_time"] for d in dicts)
            out["max_eta_compute_time"] = max(d["eta_compute_time"] for d in dicts)
        return out

    aggregate = aggregrate

    def request_stop(self) -> None:
        """Make running analyses of this object stop at the next chunk (RunStopped)."""
        self._stop.set()

    def clear_stop(self) -> None:
        self._stop.clear()

    # --- callbacks ------------------------------------------------------------------------------
    def add_callback(self, name, fn):
        self._callbacks.setdefault(name, []).append(fn)

    def del_callback(self, name, fn):
        if fn in self._callbacks.get(name, []):
            self._callbacks[name].remove(fn)

    def notify_callback(self, name, *args):
        for fn in list(self._callbacks.get(name, [])):
            fn(*args)
