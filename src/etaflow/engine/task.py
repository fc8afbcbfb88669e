"""Task: all state of one analysis (plain numpy arrays, picklable) and the feed loop that runs a
compiled group over its sources (spec 4.4-4.9).

Events handled by the feed loop:

* a source's decoded chunk runs out -> the next chunk of the same Clip (no window entry), or the
  next Clip from the source (a window entry: ETA mode empties virtual queues and re-runs the code
  before the first header there);
* a source has no more Clips -> ETA mode ends the run (pending events dropped, as ETA);
  exact mode marks the source finished and drains every pending event;
* interrupt() -> the run returns after the current event; ``resume_task`` continues exactly there;
* abort() -> the run ends; the task can still be resumed.

In exact mode each source is put in time order with a bounded look-ahead (``lookahead_ps``)
that spans chunk and window edges; an event later than the bound raises :class:`RunError`.
"""

from __future__ import annotations

import time

import numpy as np

from .._jit import kernel
from ..clip import Clip, _check_bad
from ..errors import RunError
from ..formats import base as B
from ..lang.codegen import S_SYNC, GroupProgram

__all__ = ["Task", "run_task", "RunStopped", "DEFAULT_LOOKAHEAD_PS", "CHUNK_EVENTS"]

INF = 9223372036854775807
CHUNK_EVENTS = 1 << 16
DEFAULT_LOOKAHEAD_PS = 1_000_000          # 1 us: quTAG disorder (<= 86 ns), T3 dtime spans
RET_END, RET_INTERRUPT, RET_ABORT, RET_YIELD = -1, -2, -3, -4


class RunStopped(RunError):
    """The analysis was stopped from outside (Backend stop request); the task can be resumed."""


@kernel
def _first_in_range(c, lo, hi):
    """Index of the first channel in lo..hi, or -1."""
    lo, hi = max(lo, 0), min(hi, 255)
    if lo > hi:
        return -1
    # one unsigned byte comparison per event (c - lo wraps below lo): half the time of two
    # comparisons widened to int64
    lo8, span = np.uint8(lo), np.uint8(hi - lo)
    hit = np.uint8(0)
    for i in range(c.shape[0]):
        hit |= np.uint8(np.uint8(c[i] - lo8) <= span)
    if not hit:
        return -1
    for i in range(c.shape[0]):
        if lo <= c[i] <= hi:
            return i
    return -1


@kernel
def _sort_nearly_sorted(t, c, max_moves):
    """Stable in-place insertion sort of (t, c) by t, for data that is almost in order (T3
    photons of one sync period, a quTAG's small steps back): O(n + displacement). Blocks of 32
    already in order (nearly all) are passed with one branch-free test each. Gives up (returns
    False, arrays then unspecified but a permutation of the input) after max_moves element
    moves, so the caller can fall back to a full sort."""
    n = t.shape[0]
    moves = 0
    i = 1
    while i < n:
        end = min(i + 32, n)
        prev, cur = t[i - 1:end - 1], t[i:end]
        down = False
        for k in range(cur.shape[0]):
            down |= cur[k] < prev[k]
        if down:
            for k in range(i, end):
                tk = t[k]
                if tk >= t[k - 1]:
                    continue
                ck = c[k]
                j = k
                while j > 0 and t[j - 1] > tk:
                    t[j] = t[j - 1]
                    c[j] = c[j - 1]
                    j -= 1
                t[j] = tk
                c[j] = ck
                moves += k - j
                if moves > max_moves:
                    return False
        i = end
    return True


_NO_EVENTS = np.zeros(0, np.int64)     # the decoders' nsync/dtime outputs, not wanted here


class SourceState:
    """One RFILE's input: the current Clip, how far it is decoded, and the chunk being consumed."""

    def __init__(self, name: str, rid: int, channel_offset: int, marker_offset: int):
        self.name, self.id = name, rid
        self.channel_offset, self.marker_offset = channel_offset, marker_offset
        self.clip: Clip | None = None
        self.next_rec = 0
        self.state = None
        self.t = np.zeros(0, np.int64)
        self.c = np.zeros(0, np.uint8)
        self.chunk_first_rec = 0
        self.pending_t = np.zeros(0, np.int64)   # exact mode: held back for reordering
        self.pending_c = np.zeros(0, np.uint8)
        self.last_out = -INF                       # latest time handed to the engine
        self.exhausted = False                     # no more Clips
        self.out_t = self.out_c = None             # reused decode buffers
        self.user_clip = None                      # the Clip object the caller handed over
        self.params = None                         # the decoder's (ip, fp) for this Clip
        self.lookahead = 0                         # reorder bound for this source (ps)


class Task:
    """The complete state of one analysis of one group."""

    def __init__(self, program: GroupProgram, mainloop=None, lookahead_ps: int = DEFAULT_LOOKAHEAD_PS):
        self.program = program
        self.group = program.group
        self.mode = program.mode
        self.mainloop = mainloop
        self.lookahead_ps = int(lookahead_ps)
        self.S = np.zeros(program.n_scalars, np.int64)
        for name, (i, v) in program.scalars.items():
            self.S[i] = v
        caps = [max(c, 1) for _, c in program.vchannels]
        self.VQ = np.zeros(max(sum(caps), 1), np.int64)
        self.VQI = np.zeros((max(len(caps), 1), 4), np.int64)
        base = 0
        for v, cap in enumerate(caps):
            self.VQI[v, 0], self.VQI[v, 1] = base, cap
            base += cap
        self.tables = {name: np.zeros(shape, dtype=dtype) for name, shape, dtype in program.tables}
        self.sources = [SourceState(n, i, co, mo) for n, i, co, mo in program.rfiles]
        self.sync_exact = 0.0
        self.timing = [None, 0.0]
        self.finished = False
        self.thread = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["mainloop"] = None
        d["thread"] = None
        return d

    def set(self, name: str, value) -> None:
        """Overwrite an INTEGER between runs."""
        if name not in self.program.scalars or name.startswith(("_e_", "now_", "last_")):
            raise KeyError(f"Tool '{name}' does not exist.")
        self.S[self.program.scalars[name][0]] = int(value)

    def flush_lane(self) -> None:
        """Add the gap lane's private counts to their histograms (lane.scratch_tables)."""
        for hist, scratch, offset, bins in self.program.lane_flush:
            row = self.tables[scratch][offset:offset + bins]
            self.tables[hist] += row
            row[:] = 0

    # --- running --------------------------------------------------------------------------------
    def _call(self, entry: bool) -> int:
        args = [self.S, self.VQ, self.VQI, entry, self.sync_exact]
        args += [self.tables[name] for name, _, _ in self.program.tables]
        for s in self.sources:
            args += [s.t, s.c]
        t0 = time.perf_counter()
        try:
            ret = self.mainloop(*args)
        except Exception as exc:
            raise _locate(self.program, exc) from exc
        finally:
            self.timing[1] += time.perf_counter() - t0
        return int(ret)

    def _pos_index(self, rid: int) -> int:
        return self.program.scalars[f"_e_pos{rid}"][0]

    def _set_chunk(self, s: SourceState, t, c) -> None:
        s.t, s.c = t, c
        self.S[self._pos_index(s.id)] = 0

    def _decode_more(self, s: SourceState) -> bool:
        """Load the next chunk of ``s`` from its current Clip; False when the Clip is used up."""
        exact = self.mode == "exact"
        while s.clip is not None and s.next_rec < s.clip.records():
            info = s.clip.info
            ip, fp = s.params
            # exact mode keeps the held-back events at the front of the decode buffer, so the
            # kernel appends behind them and nothing is copied chunk by chunk
            p = len(s.pending_t) if exact else 0
            if s.out_t is None or len(s.out_t) < p + CHUNK_EVENTS:
                s.out_t = np.empty(p + CHUNK_EVENTS, np.int64)
                s.out_c = np.empty(p + CHUNK_EVENTS, np.uint8)
            out_t, out_c = s.out_t, s.out_c
            if p:
                out_t[:p] = s.pending_t
                out_c[:p] = s.pending_c
            s.chunk_first_rec = s.next_rec
            nxt, n = info.kernel(s.clip.array(), s.next_rec, s.clip.records(), s.state, ip, fp,
                                 out_t[p:p + CHUNK_EVENTS], out_c[p:p + CHUNK_EVENTS],
                                 _NO_EVENTS, _NO_EVENTS)
            _check_bad(info, s.state, s.clip.filename)
            s.next_rec = nxt
            if nxt >= s.clip.records() and s.clip._end_state is None:
                s.clip._end_state = s.state.copy()   # the next window starts from here
                u = s.user_clip
                if u is not None and u.buffer is s.clip.buffer and \
                        u.fseekpoint == s.clip.fseekpoint and u._end_state is None:
                    u._end_state = s.state.copy()
            t, c = out_t[:p + n], out_c[:p + n]
            if exact:
                self._check_virtual_collision(s, out_c[p:p + n])
                t, c = self._reorder(s, t, c, final=False)
            if len(t):
                self._set_chunk(s, t, c)
                return True
        return False

    def _release(self, s: SourceState) -> None:
        """Let go of a window that is decoded and consumed, so that the Clip generator can
        refill its buffer in place (clip_file checks that nobody else holds it)."""
        if s.clip is not None and s.next_rec >= s.clip.records():
            s.clip.buffer = None

    def _check_virtual_collision(self, s: SourceState, c) -> None:
        """An event from a file on a virtual channel would be taken for the virtual one (ETA
        does exactly that, silently): exact mode refuses. Not checked in eta mode."""
        prog = self.program
        if not prog.vchannels or not len(c):
            return
        lo, hi = prog.vchn_offset, prog.vchn_offset + len(prog.vchannels) - 1
        bad = _first_in_range(c, lo, hi)
        if bad >= 0:
            raise RunError(
                f"RFILE {s.name!r} delivered an event on channel {int(c[bad])}, which is one of "
                f"the group's virtual channels {lo}..{hi}: the file has more inputs (or markers) "
                "than the RFILE's channel list leaves room for. Give the RFILE a larger channel "
                "list, move the virtual channels higher, or run with mode='eta' to get ETA's "
                "(mixed-up) numbers")

    def _reorder(self, s: SourceState, t, c, final: bool):
        """Bounded look-ahead sort of ``t`` (held-back events first, then new ones): events
        earlier than (latest - lookahead) are final, the rest is held back again."""
        if len(t) == 0:
            return t, c
        # in place: t and c are the decode buffers, whose previous chunk is consumed
        if len(t) > 1 and not _sort_nearly_sorted(t, c, 4 * len(t)):
            order = np.argsort(t, kind="stable")
            t, c = t[order], c[order]
        if t[0] < s.last_out:
            raise RunError(
                f"source {s.name!r} is out of time order by more than the look-ahead of "
                f"{s.lookahead} ps (an event at {int(t[0])} ps arrived after {s.last_out} ps "
                f"was processed); create the ETA object with a larger look-ahead, "
                "ETA(..., lookahead_ps=...)")
        if final:
            cut = len(t)
        else:
            cut = int(np.searchsorted(t, t[-1] - s.lookahead, side="left"))
        s.pending_t, s.pending_c = t[cut:].copy(), c[cut:].copy()
        if cut:
            s.last_out = int(t[cut - 1])
        return t[:cut], c[:cut]

    def _flush(self, s: SourceState) -> bool:
        if self.mode != "exact" or not len(s.pending_t):
            return False
        t, c = self._reorder(s, s.pending_t.copy(), s.pending_c.copy(), final=True)
        if len(t):
            self._set_chunk(s, t, c)
            return True
        return False

    def _feed(self, s: SourceState, clip: Clip) -> None:
        if not isinstance(clip, Clip):
            raise RunError(f"source {s.name!r} yielded {type(clip).__name__}, not a Clip")
        if clip.validate() is None:
            raise RunError(f"an empty Clip was given for RFILE {s.name!r}")
        # Like ETA's reader slot, the engine keeps its own copy of the Clip's fields: a caller
        # may refill the same Clip (clip_file(modify_clip=...)) while this task still reads it;
        # the snapshot's reference to the buffer stops clip_file refilling it in place until
        # _release lets go of a decoded window.
        s.user_clip = clip
        snap = clip.copy()
        snap.next_RecID_in_batch = clip.next_RecID_in_batch
        clip = snap
        s.clip = clip
        info = clip.info
        s.params = info.params(eta=self.mode != "exact", channel_offset=s.channel_offset,
                               marker_offset=s.marker_offset,
                               time_shift=int(clip.GlobalTimeShift))
        # T3 times are out of order by up to the microtime span (dtime beyond the sync period)
        span = int(info.dtime_unit_ps * 32768 + info.time_unit_ps) if info.mode == "T3" else 0
        s.lookahead = max(self.lookahead_ps, span)
        s.next_rec = clip.next_RecID_in_batch
        s.state = clip.start_state()
        if s.next_rec:
            from ..clip import _advance
            _advance(clip.info, s.state, clip.array(), 0, s.next_rec, clip.filename)
        if s.id == 0:
            info = clip.info
            exact = self.mode == "exact"
            if info.mode == "T3":
                self.S[S_SYNC] = round(info.time_unit_ps) if exact else info.SYNCRate_pspr
                self.sync_exact = float(info.time_unit_ps) if exact else 0.0
            else:
                self.S[S_SYNC] = info.SYNCRate_pspr
                self.sync_exact = 0.0
            if self.S[S_SYNC] == 0 and self.program.sync_uses:
                from ..errors import RecipeError
                vi, line, col, src = self.program.sync_uses[0]
                raise RecipeError(
                    f"LAST_SYNC, SYNCS and infer_start_from_stop need the sync period of the "
                    f"first RFILE, but {info.format_name} data ({s.name!r}) has none; use a T3 "
                    "file or record the sync on a channel", vi=vi, line=line, column=col,
                    source_line=src)

    def results(self, copy_arrays: bool = True) -> dict:
        out = {}
        for name, kind, store in self.program.results:
            if kind == "table":
                a = self.tables[store]
                out[name] = a.copy() if copy_arrays else a
            elif kind == "scalar":
                out[name] = np.int64(self.S[self.program.scalars[store][0]])
            else:
                s = next(x for x in self.sources if x.name == store)
                out[name] = self._position_clip(s)
        return out

    def _position_clip(self, s: SourceState):
        if s.clip is None:
            return None
        c = s.clip.copy()
        pos = int(self.S[self._pos_index(s.id)])
        if pos >= len(s.t) or self.mode == "exact":
            c.next_RecID_in_batch = s.next_rec
        else:
            c.next_RecID_in_batch = _record_after_event(s, pos - 1, self.mode)
        c.validate(check_buffer=False)
        return c


def _locate(program: GroupProgram, exc: Exception) -> Exception:
    """Turn an error raised while compiling or running generated code into a RecipeError that
    names the VI and recipe line (through the generated program's line map)."""
    import re
    from ..errors import RecipeError, RunError
    text = str(exc)
    if isinstance(exc, RuntimeError) and "queue full" in text:
        return RunError(text)
    lines = [int(m) for m in re.findall(r'g_[0-9a-f]+\.py", line (\d+)', text)]
    if not lines:
        tb = exc.__traceback__
        while tb is not None:
            if re.search(r"g_[0-9a-f]+\.py$", tb.tb_frame.f_code.co_filename):
                lines.append(tb.tb_lineno)
            tb = tb.tb_next
    for ln in reversed(lines):
        where = program.line_map[ln - 1] if 0 < ln <= len(program.line_map) else None
        if where:
            vi, line = where
            src = program.vi_sources.get(vi, "").split("\n")
            useful = [l.strip() for l in text.splitlines() if l.strip() and not
                      l.strip().startswith(("Failed in", "During:", "File ", "raise ", "^"))
                      and "g_" not in l]
            first = " ".join(useful[:3]) or type(exc).__name__
            kind = "cannot compile" if "Typing" in type(exc).__name__ or "Lowering" in \
                type(exc).__name__ else "error while running"
            return RecipeError(f"{kind}: {first.strip()}", vi=vi, line=line,
                               source_line=src[line - 1] if 0 < line <= len(src) else None)
    return exc


def _record_after_event(s: SourceState, k: int, mode: str) -> int:
    """Index of the record after the one that produced event k of the current chunk."""
    clip = s.clip
    info = clip.info
    st = clip.start_state()
    from ..clip import _advance
    _advance(info, st, clip.array(), 0, s.chunk_first_rec, clip.filename)
    ip, fp = info.params(eta=mode == "eta", channel_offset=s.channel_offset,
                         marker_offset=s.marker_offset)
    cap = k + 1 + B.MAX_EVENTS_PER_RECORD - 1
    e = np.zeros(0, np.int64)
    nxt, _ = info.kernel(clip.array(), s.chunk_first_rec, clip.records(), st, ip, fp,
                         np.empty(cap, np.int64), np.empty(cap, np.uint8), e, e)
    return int(nxt)


def _fetch(sources, name: str, max_autofeed: int):
    """Next Clip for RFILE ``name`` from a dict, a generator/iterable, or a Clip."""
    src = sources
    if isinstance(sources, dict):
        if name not in sources:
            raise ValueError(f"no source for RFILE {name!r}; sources given: {list(sources)}")
        src = sources[name]
    if isinstance(src, Clip):
        if max_autofeed <= 0:
            raise ValueError("Using a raw Clip as the source needs max_autofeed > 0, or the same "
                             "Clip is analysed forever; wrap it in a list or use eta.clips().")
        return src
    if src is None:
        return None
    if not hasattr(src, "__next__"):
        if hasattr(src, "__iter__"):
            it = iter(src)
            if isinstance(sources, dict):
                sources[name] = it
            return next(it, None)
        raise ValueError(f"source for RFILE {name!r} must be a Clip generator, an iterable of "
                         f"Clips or a Clip, not {type(src).__name__}")
    return next(src, None)


def run_task(task: Task, sources, max_autofeed: int = 0, stop_with_source: bool = True,
             should_stop=None) -> int:
    """Run ``task`` over ``sources`` until the data end, an interrupt or ``max_autofeed`` feeds.
    Returns the number of interrupts seen (ETA's mainloop return sum). ``should_stop()`` is
    polled between chunks (every 64 k events at most); when it is true, RunStopped is raised and
    the task stays resumable."""
    try:
        return _run_task(task, sources, max_autofeed, stop_with_source, should_stop)
    finally:
        # however the run ends (an error too), the counts made so far are in the histograms
        task.flush_lane()


def _run_task(task, sources, max_autofeed, stop_with_source, should_stop) -> int:
    if task.timing[0] is None:
        task.timing[0] = time.time()
    exact = task.mode == "exact"
    if isinstance(sources, (list, tuple)):
        sources = iter(sources)
    entry = True          # every eta.run call starts with a mainloop entry, as in ETA
    feeds = 0
    interrupts = 0
    S, sc = task.S, task.program.scalars
    for s in task.sources:
        # a resumed run brings new sources: a source that ran dry may deliver again
        if s.exhausted or S[sc[f"_e_done{s.id}"][0]]:
            s.exhausted = False
            if S[sc[f"_e_done{s.id}"][0]]:
                S[sc[f"_e_done{s.id}"][0]] = 0
                S[sc[f"_e_needpop{s.id}"][0]] = 1
    while True:
        if should_stop is not None and should_stop():
            raise RunStopped("the analysis was stopped")
        # like ETA's feeder: before calling the program, give every source that waits for an
        # event something to read
        for s in task.sources:
            if not S[sc[f"_e_needpop{s.id}"][0]] or S[sc[f"_e_done{s.id}"][0]]:
                continue
            if S[task._pos_index(s.id)] < len(s.t):
                continue
            if task._decode_more(s):
                continue
            got = False
            while not s.exhausted:
                if max_autofeed > 0 and feeds >= max_autofeed:
                    return interrupts          # resume_task continues with the next window
                task._release(s)
                clip = _fetch(sources, s.name, max_autofeed)
                if not clip:
                    s.exhausted = True
                    break
                task._feed(s, clip)
                entry = True
                if task._decode_more(s):   # an event-less window is skipped (ETA stopped here)
                    got = True
                    break
            if got:
                continue
            if task._flush(s):
                continue
            if not exact and stop_with_source:
                return interrupts              # ETA: the run ends, pending events are dropped
            S[sc[f"_e_done{s.id}"][0]] = 1
        if entry:           # each mainloop entry counts as one feed (ETA's loop_count)
            if max_autofeed > 0 and feeds >= max_autofeed:
                return interrupts
            feeds += 1
        ret = task._call(entry)
        entry = False
        if ret == RET_END:
            task.finished = True
            return interrupts
        if ret == RET_ABORT:
            return interrupts + 1
        if ret == RET_INTERRUPT:
            interrupts += 1
            entry = True
            continue
        if ret == RET_YIELD:          # a file-less group paused itself: not a new entry
            continue
