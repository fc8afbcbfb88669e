"""Clips: windows of raw records from a time-tag file, a growing file or a memory buffer.

The windowing functions keep ETA's documented signatures and semantics (spec section 2) and fix
its bugs (section 9.2): ``clips_list`` covers the file exactly once, a trailing partial record
waits for the next window, ``wait_timeout`` really waits for a growing file, failures return
``False``.

Each Clip carries the decoder state at the start of its buffer (overflow sum and the like), so a
Clip decodes on its own: any window split of a file decodes to exactly the events of the whole
file, in any order, in parallel, or after ``list()`` of a ``reuse_clips=False`` generator.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import types

import numpy as np

from .errors import FormatError
from .formats import base as B
from .formats.registry import open_source, source_from_fields

__all__ = ["Clip", "clip_file", "clips", "split_file", "clips_list", "clip_buffer",
           "decode_clip", "iter_events", "read_events"]

log = logging.getLogger("etaflow.frontend")

SCAN_CHUNK_BYTES = 1 << 24
DECODE_CHUNK_EVENTS = 1 << 20


class Clip:
    """One window of a time-tag source, with ETA's Clip fields.

    ``state`` is the decoder state at the first byte of ``buffer`` (see
    :mod:`etaflow.formats.base`); ``source`` describes the records (None for a hand-built Clip,
    which is then described from ``RecordType``, ``TTRes_pspr``, ``DTRes_pspr``, ``SYNCRate_pspr``
    and ``BytesofRecords``).
    """

    FIELDS = ("fseekpoint", "headeroffset", "TTRes_pspr", "DTRes_pspr", "SYNCRate_pspr",
              "BytesofRecords", "RecordType", "GlobalTimeShift", "CHANNEL_OFFSET", "MARKER_OFFSET",
              "batch_actualread_length", "next_RecID_in_batch", "overflowcorrection",
              "buffer_status", "buffer")

    def __init__(self):
        self.fseekpoint = 0
        self.headeroffset = 0
        self.TTRes_pspr = 0
        self.DTRes_pspr = 0
        self.SYNCRate_pspr = 0
        self.BytesofRecords = 0
        self.RecordType = 0
        self.GlobalTimeShift = 0
        self.CHANNEL_OFFSET = 0
        self.MARKER_OFFSET = 0
        self.batch_actualread_length = 0
        self.next_RecID_in_batch = 0
        self.buffer_status = 0
        self.buffer = None
        self.filename = None
        self.source = None
        self.state = B.new_state()
        self._end_state = None       # decoder state after the last record of buffer, once known
        self._owns_buffer = False    # True when clip_file may refill buffer in place

    # ETA keeps the overflow sum as a Clip field; here it is part of the decoder state.
    @property
    def overflowcorrection(self) -> int:
        return int(self.state[B.ST_OVERFLOW])

    @overflowcorrection.setter
    def overflowcorrection(self, value) -> None:
        self.state = self.state.copy()
        self.state[B.ST_OVERFLOW] = int(value)
        self._end_state = None

    def __repr__(self) -> str:
        return (f"<Clip {self.filename or 'buffer'} records {self.first_record()}.."
                f"{self.first_record() + self.records()} ({self.batch_actualread_length} bytes)>")

    # --- ETA methods ------------------------------------------------------------------------
    def validate(self, check_buffer: bool = True):
        """ETA's check: coerce resolutions to int; the Clip itself, or None if it holds nothing."""
        for name in ("GlobalTimeShift", "TTRes_pspr", "DTRes_pspr", "SYNCRate_pspr"):
            setattr(self, name, int(getattr(self, name)))
        if check_buffer and self.buffer is not None and \
                self.batch_actualread_length > len(self.buffer):
            raise ValueError("batch_actualread_length is larger than the size of buffer")
        if self.BytesofRecords == 0 or self.batch_actualread_length == 0:
            return None
        return self

    def check_consumed(self) -> bool:
        return self.next_RecID_in_batch * self.BytesofRecords >= self.batch_actualread_length

    def get_pos(self) -> int:
        """Absolute index (records after the header) of the next record not yet read."""
        return self.first_record() + self.next_RecID_in_batch

    def seek(self, offset: int, whence: int = 0) -> None:
        if whence != 0:
            raise NotImplementedError("Clip.seek supports only whence=0 (absolute record index)")
        self.fseekpoint = self.headeroffset + self.BytesofRecords * int(offset)
        self._end_state = None

    def parse_header(self, filename, format: int = -1) -> None:
        """Read the header of ``filename`` and set the Clip fields from it."""
        info = open_source(filename, format)
        self._set_source(info)
        self.filename = os.fspath(filename)

    def to_reader_input(self) -> list:
        return [int(v) if isinstance(v, (int, float, np.integer)) else -1
                for v in (getattr(self, f) for f in self.FIELDS)]

    # --- etaflow ------------------------------------------------------------------------------
    def _set_source(self, info: B.SourceInfo) -> None:
        self.source = info
        self.headeroffset = self.fseekpoint = info.data_offset
        self.TTRes_pspr = info.TTRes_pspr
        self.DTRes_pspr = info.DTRes_pspr
        self.SYNCRate_pspr = info.SYNCRate_pspr
        self.BytesofRecords = info.record_size
        self.RecordType = info.record_type
        self.batch_actualread_length = 0
        self.next_RecID_in_batch = 0
        self.state = B.new_state()
        self._end_state = None

    @property
    def info(self) -> B.SourceInfo:
        """The SourceInfo; built from the ETA fields for a hand-built Clip."""
        if self.source is None:
            self.source = source_from_fields(int(self.RecordType), int(self.TTRes_pspr),
                                             int(self.DTRes_pspr), int(self.SYNCRate_pspr),
                                             int(self.BytesofRecords))
        return self.source

    def first_record(self) -> int:
        if not self.BytesofRecords:
            return 0
        return (self.fseekpoint - self.headeroffset) // self.BytesofRecords

    def records(self) -> int:
        """Whole records in the buffer."""
        if not self.BytesofRecords:
            return 0
        return self.batch_actualread_length // self.BytesofRecords

    def array(self) -> np.ndarray:
        """The buffer's whole records as a uint8 array."""
        if self.buffer is None:
            return np.zeros(0, np.uint8)
        buf = self.buffer if isinstance(self.buffer, np.ndarray) else \
            np.frombuffer(self.buffer, dtype=np.uint8)
        return buf[: self.records() * self.BytesofRecords]

    def start_state(self) -> np.ndarray:
        """Decoder state at the first record of the buffer."""
        first = self.first_record()
        if int(self.state[B.ST_RECORD]) != first:
            if self.filename is None:   # a memory buffer: its state is by definition at its start
                self.state = self.state.copy()
                self.state[B.ST_RECORD] = first
            else:
                self.state = _state_at(self, first)
        return self.state.copy()

    def end_state(self) -> np.ndarray:
        """Decoder state after the buffer's last whole record (computed once, by a state scan)."""
        if self._end_state is None:
            st = self.start_state()
            _advance(self.info, st, self.array(), 0, self.records(), self.filename)
            self._end_state = st
        return self._end_state.copy()

    def copy(self) -> "Clip":
        """A new Clip with the same fields and state and no buffer (ETA's reuse_clips=False copy)."""
        c = Clip()
        for f in self.FIELDS:
            if f not in ("buffer", "overflowcorrection"):
                setattr(c, f, getattr(self, f))
        c.filename, c.source = self.filename, self.source
        c.state = self.state.copy()
        c._end_state = None if self._end_state is None else self._end_state.copy()
        c.buffer = self.buffer       # shared read-only: the copy's next window gets a new buffer
        return c

    def events(self, mode: str = "exact", **kw):
        """Decode the whole window: ``(time_ps, channel)`` arrays (see :func:`decode_clip`)."""
        return decode_clip(self, mode=mode, **kw)


# --- decoding -------------------------------------------------------------------------------------

def _check_bad(info: B.SourceInfo, state: np.ndarray, filename) -> None:
    if state[B.ST_BAD]:
        rec = int(state[B.ST_FIRST_BAD])
        value = int(state[B.ST_FIRST_BAD_VALUE]) & ((1 << (8 * min(info.record_size, 8))) - 1)
        raise FormatError(
            f"illegal {info.format_name} record #{rec} (value 0x{value:0{2 * min(info.record_size, 8)}X})"
            f" for record type 0x{info.record_type:X}: the file is corrupt or is not "
            f"{info.format_name} data ({int(state[B.ST_BAD])} such records in this window); "
            "check format= or the file", filename or info.filename or "<buffer>",
            info.data_offset + rec * info.record_size)


_EMPTY = np.zeros(0, np.int64)
_SCRATCH_T = np.zeros(B.MAX_EVENTS_PER_RECORD + 1, np.int64)
_SCRATCH_C = np.zeros(B.MAX_EVENTS_PER_RECORD + 1, np.uint8)


def _advance(info: B.SourceInfo, state: np.ndarray, buf: np.ndarray, start: int, stop: int,
             filename=None) -> None:
    """Advance ``state`` over records ``[start, stop)`` of ``buf`` without emitting events."""
    if stop <= start:
        return
    ip, fp = info.params(emit=False)
    info.kernel(buf, start, stop, state, ip, fp, _SCRATCH_T, _SCRATCH_C, _EMPTY, _EMPTY)
    _check_bad(info, state, filename)


def _advance_file(info: B.SourceInfo, state: np.ndarray, filename, first: int, last: int) -> None:
    """Advance ``state`` over the file's records ``[first, last)``, reading in chunks."""
    rs = info.record_size
    per = max(SCAN_CHUNK_BYTES // rs, 1)
    buf = np.empty(per * rs, np.uint8)
    state[B.ST_RECORD] = first
    with open(filename, "rb") as f:
        f.seek(info.data_offset + first * rs)
        i = first
        while i < last:
            n = min(per, last - i)
            got = f.readinto(memoryview(buf)[: n * rs]) // rs
            if got == 0:
                break
            _advance(info, state, buf, 0, got, filename)
            i += got


def iter_events(clip: Clip, mode: str = "exact", *, channel_offset=None, marker_offset=None,
                t3: bool = False, chunk: int = DECODE_CHUNK_EVENTS, start_record: int | None = None,
                copy: bool = True):
    """Decode a Clip chunk by chunk: yields ``(time, channel)`` (or ``(time, channel, nsync,
    dtime)`` with ``t3=True``) arrays holding at most ``chunk`` events each. Bounded memory.

    ``copy=False`` yields views of one reused buffer, valid only until the next iteration
    (saves a copy of every event when each chunk is consumed at once)."""
    info = clip.info
    eta = _mode_is_eta(mode)
    ip, fp = info.params(eta=eta,
                         channel_offset=clip.CHANNEL_OFFSET if channel_offset is None else channel_offset,
                         marker_offset=clip.MARKER_OFFSET if marker_offset is None else marker_offset,
                         time_shift=int(clip.GlobalTimeShift))
    buf = clip.array()
    n_rec = clip.records()
    state = clip.start_state()
    i = 0
    if start_record is None:
        start_record = clip.next_RecID_in_batch
    if start_record:
        _advance(info, state, buf, 0, min(start_record, n_rec), clip.filename)
        i = min(start_record, n_rec)
    cap = max(chunk, B.MAX_EVENTS_PER_RECORD * 2)
    out_t = np.empty(cap, np.int64)
    out_c = np.empty(cap, np.uint8)
    out_ns = np.empty(cap, np.int64) if t3 else _EMPTY
    out_dt = np.empty(cap, np.int64) if t3 else _EMPTY
    while i < n_rec:
        i, n = info.kernel(buf, i, n_rec, state, ip, fp, out_t, out_c, out_ns, out_dt)
        _check_bad(info, state, clip.filename)
        if n:
            arrays = (out_t, out_c, out_ns, out_dt) if t3 else (out_t, out_c)
            yield tuple(a[:n].copy() if copy else a[:n] for a in arrays)
    if start_record == 0 or start_record is None:
        clip._end_state = state


def decode_clip(clip: Clip, mode: str = "exact", **kw):
    """All events of a Clip as ``(time_ps int64, channel uint8)`` arrays (``t3=True`` adds the
    T3 sync index and dtime arrays; -1 where an event has none)."""
    parts = list(iter_events(clip, mode, **kw))
    width = 4 if kw.get("t3") else 2
    if not parts:
        return tuple(np.zeros(0, np.uint8 if k == 1 else np.int64) for k in range(width))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(width))


def read_events(filename, format: int = -1, mode: str = "exact", **kw):
    """All events of a file (convenience; for large files iterate over :func:`clips`)."""
    parts = [decode_clip(c, mode, **kw) for c in clips(filename, format=format,
                                                        reuse_clips=True)]
    width = 4 if kw.get("t3") else 2
    if not parts:
        return tuple(np.zeros(0, np.uint8 if k == 1 else np.int64) for k in range(width))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(width))


def _mode_is_eta(mode: str) -> bool:
    if mode not in ("exact", "eta"):
        raise ValueError(f"mode must be 'exact' or 'eta', not {mode!r}")
    return mode == "eta"


# --- windowing ------------------------------------------------------------------------------------

def _state_at(clip: Clip, target: int) -> np.ndarray:
    """Decoder state at absolute record index ``target``, advanced from the nearest point whose
    state is known: the Clip's own state, the end of its buffer, or the start of the data."""
    info = clip.info
    known = int(clip.state[B.ST_RECORD])
    first, n = clip.first_record(), clip.records()
    if clip.buffer is not None and n and known == first and target == first + n and \
            clip._end_state is not None:
        return clip.end_state()          # the usual case: sliding on after a decoded window
    if clip.buffer is not None and n and known == first and first <= target <= first + n:
        st = clip.state.copy()
        _advance(info, st, clip.array(), 0, target - first, clip.filename)
        return st
    if clip.buffer is not None and n and known == first and target > first + n:
        st, at = clip.end_state(), first + n
    elif known <= target:
        st, at = clip.state.copy(), known
    else:
        st, at = B.new_state(), 0
    if at != target:
        if clip.filename is None:
            raise FormatError("cannot seek a memory-buffer Clip outside its window")
        _advance_file(info, st, clip.filename, at, target)
    st[B.ST_RECORD] = target
    return st


def clip_file(filename, modify_clip=None, read_events=0, seek_event=-1, format=-1,
              wait_timeout=0, mmap_read=False):
    """Load one window of ``read_events`` records (0: all remaining; -n: all but the last n).

    ``seek_event < 0`` slides to the end of ``modify_clip``'s window (a fresh Clip starts after
    the header); otherwise it seeks to that absolute record index. With ``wait_timeout`` > 0 it
    waits up to that many seconds for a growing file to hold the requested records. Only whole
    records are loaded: a trailing partial record waits for the next window. Returns the Clip,
    or ``False`` when no record is available (ETA's documented failure value).
    """
    filename = os.fspath(filename)
    if modify_clip is None:
        clip = Clip()
        clip.parse_header(filename, format)
    elif not isinstance(modify_clip, Clip):
        raise ValueError("ETA.clip_file: modify_clip must take a Clip object as the input.")
    else:
        clip = modify_clip
        if clip.filename is None:
            clip.filename = filename
    rs = int(clip.BytesofRecords)
    if rs <= 0:
        raise ValueError("Clip.BytesofRecords must be > 0 (parse a header or set it by hand)")
    if seek_event is None or seek_event < 0:
        target = clip.first_record() + clip.records()
    else:
        target = int(seek_event)
    start_byte = clip.headeroffset + rs * target

    size = os.path.getsize(filename)
    if read_events is None or read_events <= 0:
        read_events = (read_events or 0) + (size - start_byte) // rs
        if read_events <= 0:
            read_events = 1
    want = start_byte + rs * int(read_events)
    waited, next_note = 0.0, 1.0
    while size < want and waited < wait_timeout:
        time.sleep(0.01)
        waited += 0.01
        size = os.path.getsize(filename)
        if waited >= next_note:
            log.info("Waiting for file %s to grow (%d of %d bytes) ...", filename, size, want)
            next_note += 1.0
    if size < want and wait_timeout > 0:
        log.info("Timeout when waiting for data, overriding read_events to the current file "
                 "boundary.")
    if start_byte > size:
        log.info("Can not seek to record %d of %s: the file holds fewer records.", target, filename)
        return False
    n = (min(size, want) - start_byte) // rs
    if n <= 0:
        log.debug("%s is not long enough for the Clip, False is returned.", filename)
        return False

    state = _state_at(clip, target)
    nbytes = n * rs
    if mmap_read:
        buf = np.memmap(filename, dtype=np.uint8, mode="r", offset=start_byte, shape=(nbytes,))
    else:
        buf = clip.buffer if _refillable(clip, nbytes) else np.empty(nbytes, np.uint8)
        with open(filename, "rb") as f:
            f.seek(start_byte)
            got = f.readinto(memoryview(buf))
        if got < nbytes:   # the file shrank between stat and read
            n = got // rs
            nbytes = n * rs
            if n == 0:
                return False
    clip.fseekpoint = start_byte
    clip.buffer = buf
    clip._owns_buffer = not mmap_read
    clip.batch_actualread_length = nbytes
    clip.next_RecID_in_batch = 0
    clip.state = state
    clip._end_state = None
    return clip.validate() or False


def _attribute_refs(holder, name: str) -> int:
    """sys.getrefcount of holder.<name> as seen from here (the count includes this frame's own
    references, which differ between Python versions; _SOLE_REFS calibrates them)."""
    value = getattr(holder, name)
    return sys.getrefcount(value)


# what _attribute_refs reports for an object that only its attribute holds
_SOLE_REFS = _attribute_refs(types.SimpleNamespace(x=np.empty(1)), "x")


def _refillable(clip: Clip, nbytes: int) -> bool:
    """The Clip's buffer may be refilled in place: it is an array clip_file made, of the right
    size, and nobody else holds it (the engine lets go of a window once it has decoded it; a
    Clip copy or a caller's variable keeps it alive and gets a new buffer). Refilling saves the
    page faults of a fresh buffer per window, which cost more than the read itself."""
    b = clip.buffer
    if not (clip._owns_buffer and type(b) is np.ndarray and b.base is None and len(b) == nbytes):
        return False
    del b
    return _attribute_refs(clip, "buffer") <= _SOLE_REFS


def clips(filename, modify_clip=None, read_events=1024 * 1024 * 10, seek_event=-1, format=-1,
          wait_timeout=0, reuse_clips=True, keep_indexes=None, **kwargs):
    """Generator of consecutive windows of ``read_events`` records.

    ``reuse_clips=True`` yields the same Clip object, refilled (cheap; do not ``list()`` it);
    ``False`` yields independent Clips. ``keep_indexes`` (a list) keeps only those window numbers.
    """
    if keep_indexes is not None and not isinstance(keep_indexes, (list, tuple, range)):
        raise ValueError("keep_indexes must be a list of window indexes")
    if keep_indexes is not None and len(keep_indexes) == 0:
        log.warning("clips: keep_indexes is empty, so no window is kept (ETA read the whole file).")
        return
    yield from _windows(filename, modify_clip, read_events, seek_event, format, wait_timeout,
                        reuse_clips, keep_indexes, None, kwargs.get("mmap_read", False))


def _windows(filename, modify_clip, read_events, seek_event, format, wait_timeout, reuse_clips,
             keep_indexes, max_windows, mmap_read):
    filename = os.fspath(filename)
    last = modify_clip
    if last is None:
        last = Clip()
        last.parse_header(filename, format)
        last.filename = filename
    base = last.first_record() + last.records() if (seek_event is None or seek_event < 0) \
        else int(seek_event)
    counter = 0
    progress = -100.0
    while True:
        if keep_indexes is not None:
            if counter >= len(keep_indexes):
                return
            seek = base + int(keep_indexes[counter]) * int(read_events)
        elif max_windows is not None and counter >= max_windows:
            return
        elif counter == 0:
            seek = base
        else:
            seek = -1
        cur = last if reuse_clips else last.copy()
        cur = clip_file(filename, modify_clip=cur, read_events=read_events, seek_event=seek,
                        wait_timeout=wait_timeout, mmap_read=mmap_read)
        if not cur:
            return
        done = 100.0 * (cur.fseekpoint + cur.batch_actualread_length) / max(os.path.getsize(filename), 1)
        if done - progress > 5:
            log.info("Progress %.0f%% of %s", done, filename, extra={"progress": done})
            progress = done
        yield cur
        counter += 1
        last = cur


def split_file(filename, modify_clip=None, cuts=1, format=-1, wait_timeout=0, reuse_clips=True,
               keep_indexes=None):
    """Deprecated: ``clips`` with ``read_events = ceil(records / cuts)``."""
    filename = os.fspath(filename)
    if modify_clip is None:
        modify_clip = Clip()
        modify_clip.parse_header(filename, format)
        modify_clip.filename = filename
    n = max((os.path.getsize(filename) - modify_clip.headeroffset) // modify_clip.BytesofRecords, 0)
    log.info("ETA.split_file: The file %s will be cut into %d equal size Clips.", filename, cuts)
    per = max(math.ceil(n / max(int(cuts), 1)), 1)
    return clips(filename, modify_clip=modify_clip, read_events=per, format=format,
                 wait_timeout=wait_timeout, reuse_clips=reuse_clips, keep_indexes=keep_indexes)


def clips_list(filename, read_events=1024 * 1024, format=-1, threads=None):
    """``threads`` generators that together cover every record of the file exactly once, in
    contiguous runs of windows (for parallel tasks). Each starts with the exact decoder state of
    its first record, so absolute times are right in every task. Those states come from one scan
    of the file in order, made on demand: a part's generator scans from the previous part's
    start when it is first asked for a window (in the thread that runs the part), so the scan
    overlaps the first parts' work instead of delaying every part."""
    filename = os.fspath(filename)
    threads = int(threads or (os.cpu_count() or 1) * 2)
    head = Clip()
    head.parse_header(filename, format)
    head.filename = filename
    n = head.info.file_records(os.path.getsize(filename))
    windows = math.ceil(n / read_events) if n else 0
    per = math.ceil(windows / threads) if windows else 0
    starts = [min(t * per * read_events, n) for t in range(threads)]
    states = _StartStates(head, starts)
    gens = []
    for t in range(threads):
        c = head.copy()
        c.buffer = None
        c.batch_actualread_length = 0
        c.fseekpoint = head.headeroffset + starts[t] * head.BytesofRecords
        c._end_state = None
        count = max(0, min(per, windows - t * per))
        gens.append(_part(states, t, c, read_events, format, count))
    return gens


class _StartStates:
    """The decoder states at the first records of clips_list's parts, found by one scan of the
    file in order, as far as the furthest part asked for so far (parts may ask from any
    thread)."""

    def __init__(self, head: Clip, starts: list):
        self._head, self._starts = head, starts
        self._states = [head.start_state()]
        self._lock = threading.Lock()

    def get(self, part: int) -> np.ndarray:
        with self._lock:
            while len(self._states) <= part:
                state = self._states[-1].copy()
                at = int(state[B.ST_RECORD])
                _advance_file(self._head.info, state, self._head.filename, at,
                              self._starts[len(self._states)])
                self._states.append(state)
            return self._states[part].copy()


def _part(states: _StartStates, part: int, clip: Clip, read_events, format, count):
    if count <= 0:
        return
    clip.state = states.get(part)
    yield from _windows(clip.filename, clip, read_events, -1, format, 0, True, None, count, False)


def clip_buffer(data, format: int = -1, *, header: bool = True, filename: str = "<buffer>"):
    """A Clip over a memory buffer: a whole file's bytes (``header=True``) or bare records
    (``header=False``, then ``format`` must be a headerless code or a Clip's RecordType)."""
    import io
    raw = bytes(data)
    clip = Clip()
    if header:
        # Header readers take a file object; they read only the header.
        from .formats.registry import _load, detect_format
        code = detect_format(raw[:64], filename) if format is None or format < 0 else format
        info = _load()[code].open(io.BytesIO(raw), filename, len(raw))
    else:
        from .formats.registry import _load
        entry = _load().get(format)
        if entry is not None and entry.headerless is not None:
            info = entry.headerless(format, 1, 1, 0)
        else:
            raise FormatError(f"format {format} needs a header; build a Clip by hand instead",
                              filename)
    clip._set_source(info)
    body = np.frombuffer(raw, dtype=np.uint8)[info.data_offset:]
    n = len(body) // info.record_size
    clip.buffer = body[: n * info.record_size]
    clip.batch_actualread_length = n * info.record_size
    clip.state[B.ST_RECORD] = 0
    return clip
