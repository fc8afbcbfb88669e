"""The gap lane: runs of photons that cannot add to a histogram, passed without the merge.

In ETA's correlation and lifetime recipes most photons only push a start into a clock, or stop a
clock whose starts all lie further back than the histogram reaches, and so record nothing. The
general loop still merges and dispatches each of them on its (random) channel, and the
mispredicted channel branch is most of its cost. The lane is a second, branch-light loop over
the records of the one file, inside the same generated ``mainloop``, that computes the same
state:

* what a file channel's event does is worked out here, at compile time, for the whole
  *expansion* of the event: the file event and the copies that delay lines of delay 0 make of it,
  run inline in the merge's order (codegen._line_tail); VIs, their sections and actions in
  dispatch order (spec 3.8), each clock value followed symbolically (``t`` the event's time,
  ``ls`` its last sync, or ``old``: set by an earlier event);
* an action the lane supports is one of: a clock start or stop (no argument or LAST_SYNC), a
  ``record``/``record_all`` into a 1-D histogram whose operands are both set in this expansion
  (done in the lane, branch-free, masked by channel), or whose starts are all ``old`` while the
  stop is ``t`` (nothing can be recorded when the previous event lies at least the histogram's
  range back: the *gap*);
* clock values and ring contents are not written per record: when the lane stops, the last
  records that set them are found again (walking back) and the values written, so the state is
  the one the general loop would have left, slot for slot;
* the lane stops (and the general loop takes the record) at anything else: a channel whose
  expansion has another action, a gap too short, a next record that would not let the copies run
  inline, a busy virtual channel, the end of the window.

``old`` values never lie after the latest event time dispatched so far (``_e_hw``, kept by the
general loop): clocks only ever take event times, last syncs, 0 or each other's values, unless
a recipe starts a clock at a computed time, and such clocks are not skipped.
"""

from __future__ import annotations

import dataclasses

ENABLE = True     # tests switch the lane off to compare


class _Unsupported(Exception):
    pass


@dataclasses.dataclass
class Record:
    hist: str
    bins: int
    width: int
    mod: str | None
    start: str          # 't' or 'ls'
    stop: str


@dataclasses.dataclass
class Expansion:
    """What one file channel's event does, as the lane runs it."""
    chn: int
    last_chn: int                                  # channel of the expansion's last event
    rings: dict = dataclasses.field(default_factory=dict)    # clock -> value ('t'/'ls')
    sets: dict = dataclasses.field(default_factory=dict)     # (clock, side) -> value
    records: list = dataclasses.field(default_factory=list)  # always-on records
    gap: int = 0                                   # range of the records it skips
    slow: list = dataclasses.field(default_factory=list)     # (VI, instruction) run in a gap


@dataclasses.dataclass
class LanePlan:
    expansions: dict          # file channel -> Expansion (channels some VI listens to)
    unsupported: list         # file channels the lane leaves to the general loop
    gap: int                  # the gap every lane record needs to its predecessor
    strict: bool              # the next record must be later (not at the same time)


def plan(gc) -> LanePlan | None:
    """The lane of compiler ``gc``'s group, or None where it cannot run or would not help."""
    if not (ENABLE and gc.R == 1 and gc.leaf_locals and not gc.uses_fileid
            and not gc.may_interrupt):
        return None
    if any(ins.name == "EMIT_CODE" for p in gc.parsed for sec in p.sections
           for ins in sec.instructions):
        return None     # embedded code may read or write anything
    by_chn: dict = {}
    for gi, p in enumerate(gc.parsed):
        for (_, ch) in p.graph.transitions:
            by_chn.setdefault(ch, [])
            if gi not in by_chn[ch]:
                by_chn[ch].append(gi)
    unbounded = _unbounded_clocks(gc)
    rank = {f: i for i, f in enumerate(gc._tie_order())}
    file_chans = [c for c in by_chn if c < gc.vmin or not gc.V]
    expansions, unsupported, strict = {}, [], False
    for ch in sorted(file_chans):
        try:
            x, copies = _expand(gc, ch, by_chn, unbounded, rank)
        except _Unsupported:
            unsupported.append(ch)
            continue
        # a copy that loses a tie against the file runs inline only before a later record
        strict |= any(rank[gc.R + v - gc.vmin] > rank[0] for v in copies)
        expansions[ch] = x
    if not any(x.rings or x.records for x in expansions.values()):
        return None
    gap = max((x.gap for x in expansions.values()), default=0)
    return LanePlan(expansions, unsupported, gap, strict)


def _unbounded_clocks(gc) -> set:
    """Clocks started or stopped at a computed time: their values may lie in the future."""
    out = set()
    for p in gc.parsed:
        for sec in p.sections:
            for ins in sec.instructions:
                if ins.obj is not None and ins.name in ("start", "stop") and ins.args and \
                        ins.args[0] not in ("LAST_SYNC", "SYNCS"):
                    out |= {b for b, _ in gc._objects(ins.obj)}
    return out


def _expand(gc, ch, by_chn, unbounded, rank):
    x = Expansion(ch, ch)
    values: dict = {}           # (clock, side) -> 't' | 'ls' within this expansion
    copies: list = []
    _run_event(gc, ch, by_chn, x, values, unbounded, copies)
    copies.sort(key=lambda v: rank[gc.R + v - gc.vmin])
    for v in copies:
        _run_event(gc, v, by_chn, x, values, unbounded, None)
        x.last_chn = v
    return x, copies


def _run_event(gc, ch, by_chn, x, values, unbounded, copies):
    for gi in by_chn.get(ch, []):
        p = gc.parsed[gi]
        if gc._reads_state(gi) or not gc._state_free(gi, ch):
            raise _Unsupported
        s, dst = next((s, d) for (s, c), d in sorted(p.graph.transitions.items()) if c == ch)
        for sec in gc._sections_run(p, s, dst, ch):
            for ins in sec.instructions:
                _action(gc, p, ins, x, values, unbounded, copies)


def _action(gc, p, ins, x, values, unbounded, copies):
    n = ins.name
    if ins.obj is None:
        if n in ("RFILE", "VFILE", "INTEGER", "TABLE", "CLOCK", "HISTOGRAM"):
            return
        if n == "emit" and id(ins) in gc.line_ins and copies is not None:
            from .codegen import _int_literal
            if _int_literal(gc._arg(ins, 1, "waittime", "0")) != 0:
                raise _Unsupported      # a delayed copy is not due with its photon
            copies.append(_int_literal(gc._arg(ins, 0, "chn")))
            return
        raise _Unsupported
    objs = gc._objects(ins.obj)
    if len(objs) != 1 or objs[0][1]:
        raise _Unsupported
    sym = gc.symbols.get(objs[0][0])
    if sym is None:
        raise _Unsupported
    if sym.kind == "CLOCK" and n in ("start", "stop"):
        if sym.info["max_stop"] > 1 or ins.args not in ([], ["LAST_SYNC"]):
            raise _Unsupported
        value = "ls" if ins.args else "t"
        if n == "start" and sym.info["max_start"] > 1:
            if sym.name in x.rings:
                raise _Unsupported      # two starts of one ring from one photon
            x.rings[sym.name] = value
        else:
            x.sets[(sym.name, n)] = value
            x.slow.append((p, ins))
        values[(sym.name, n)] = value
        return
    if sym.kind == "HISTOGRAM" and n in ("record", "record_all") and len(ins.args) == 1 \
            and len(sym.info["dims"]) == 1 and not sym.info["extra"]:
        bins, width, mod = sym.info["dims"][0]
        c = gc.symbols.get(gc._objects(ins.args[0])[0][0])
        if c is None or c.kind != "CLOCK" or c.info["max_stop"] > 1:
            raise _Unsupported
        start, stop = values.get((c.name, "start")), values.get((c.name, "stop"))
        multi = c.info["max_start"] > 1
        if n == "record_all" and not multi:
            raise _Unsupported
        if not multi and start and stop:
            x.records.append(Record(sym.name, bins, width, mod, start, stop))
            return
        # the starts were set by earlier events: nothing is recorded across the gap
        if start is None and stop == "t" and mod is None and c.name not in unbounded:
            x.gap = max(x.gap, bins * width)
            x.slow.append((p, ins))
            return
    raise _Unsupported


# --- code ----------------------------------------------------------------------------------------

def _value(v, t):
    return t if v == "t" else f"_rt.last_sync({t}, SYNCRate_pspr, _e_sync_exact, _e_exact)"


def _chn_test(var, chans):
    return " or ".join(f"{var} == {c}" for c in chans)


def emit(gc, lp: LanePlan):
    """The lane, at the top of the general loop (see the module docstring)."""
    e = gc.e
    X = lp.expansions
    src_t, src_c = "_e_src0_t", "_e_src0_c"
    entry = [f"{gc._lt(f)} == INF" for f in range(gc.R, gc.n)] + ["_e_pos0 > 0"]
    if lp.unsupported:
        entry.append(f"not ({_chn_test('_e_lc0', lp.unsupported)})")
    rings = sorted({k for x in X.values() for k in x.rings})
    sets = sorted({k for x in X.values() for k in x.sets})
    e("# the gap lane (lane.py): the file's photons without the merge")
    e(f"if {' and '.join(entry)}:")
    e.indent()
    e("_l_first = _e_pos0 - 1")
    e("_l_t = _e_lt0")
    e("_l_c = _e_lc0")
    if lp.gap:
        e("_l_hw = _e_hw")
    for k in rings:
        e(f"_l_n_{k} = 0")
        e(f"_l_c0_{k} = ({k}_start_head - {k}_start_tail) % {k}_start_tab.shape[0]")
    e(f"while _e_pos0 < {src_t}.shape[0]:")
    e.indent()
    e(f"_l_tn = {src_t}[_e_pos0]")
    if lp.strict or not gc.exact:
        # exact mode feeds every file in time order (the task sorts): only ties need a look
        e(f"if _l_tn {'<=' if lp.strict else '<'} _l_t:")
        e("    break")
    uses_ls = any("ls" in (r.start, r.stop) for x in X.values() for r in x.records) or \
        any(v == "ls" for x in X.values() for v in list(x.rings.values()) + list(x.sets.values()))
    if uses_ls:
        e("_l_ls = _rt.last_sync(_l_t, SYNCRate_pspr, _e_sync_exact, _e_exact)")
    _records(e, X)
    if lp.gap:
        _slow(gc, e, X, rings)
    for k in rings:
        # the slot at a ring's head is always free: write it whatever the channel, and move
        # the head only for a start (no branch on the random channel); an unsigned index
        # spares numba's negative-index test
        tab, head = f"{k}_start_tab", f"{k}_start_head"
        chans = [c for c, x in X.items() if k in x.rings]
        e(f"{tab}[np.uint64({head})] = {_select(X, chans, lambda c: _var(X[c].rings[k]))}")
        e(f"_l_m = {_mask(chans)}")
        e(f"{head} += _l_m")
        e(f"_l_n_{k} += _l_m")
        e(f"if {head} == {tab}.shape[0]:")
        e(f"    {head} = 0")
    for clock, side in sets:
        chans = [c for c, x in X.items() if (clock, side) in x.sets]
        var = f"{clock}_{side}_rec"
        e(f"{var} = {_select(X, chans, lambda c: _var(X[c].sets[(clock, side)]), var)}")
    if lp.gap:
        e("if _l_t > _l_hw:")
        e("    _l_hw = _l_t")
    e(f"_l_c = {src_c}[_e_pos0]")
    e("_e_pos0 += 1")
    e("_l_t = _l_tn")
    if lp.unsupported:
        e(f"if {_chn_test('_l_c', lp.unsupported)}:")
        e("    break")
    e.dedent()
    e("if _e_pos0 - 1 > _l_first:")
    e.indent()
    _tails(e, rings)
    e(f"AbsTime_ps = {src_t}[_e_pos0 - 2]")
    e(f"chn = {src_c}[_e_pos0 - 2]")
    for c, x in X.items():
        if x.last_chn != c:
            e(f"if chn == {c}:")
            e(f"    chn = {x.last_chn}")
    if lp.gap:
        e("_e_hw = _l_hw")
    e.dedent()
    e("_e_lt0 = _l_t")
    e("_e_lc0 = _l_c")
    e.dedent()


def _tails(e, rings):
    """A ring keeps at most size-1 values (runtime.ring_append): its tail follows from the
    count."""
    for k in rings:
        tab, head, tail = f"{k}_start_tab", f"{k}_start_head", f"{k}_start_tail"
        e(f"{tail} = ({head} - min(_l_c0_{k} + _l_n_{k}, {tab}.shape[0] - 1)) % {tab}.shape[0]")


def _slow(gc, e, X, rings):
    """A photon less than a histogram's range after the previous event: its clock stops and
    the records it could make run as in the general loop (before this photon's own starts,
    which its records cannot see: _action refuses such expansions)."""
    chans = [c for c, x in X.items() if x.gap]
    e(f"if _l_t - _l_hw < {max(X[c].gap for c in chans)}:")
    e.indent()
    e("AbsTime_ps = _l_t")
    _tails(e, rings)
    for i, c in enumerate(chans):
        e(f"{'if' if i == 0 else 'elif'} _l_c == {c}:")
        e.indent()
        for p, ins in X[c].slow:
            gc._action(p, ins, triggered=True)
        e("pass")
        e.dedent()
    e.dedent()


def _var(v):
    return "_l_t" if v == "t" else "_l_ls"


def _mask(chans):
    return " | ".join(f"(_l_c == {c})" for c in chans)


def _select(X, chans, value, default=None):
    """Branch-free choice of a value by channel (one value for all channels needs no test)."""
    vals = {c: value(c) for c in chans}
    if default is None and len(set(vals.values())) == 1:
        return next(iter(vals.values()))
    out = default if default is not None else vals[chans[-1]]
    for c in (chans if default is not None else chans[:-1]):
        out = f"({vals[c]} if _l_c == {c} else {out})"
    return out


def _records(e, X):
    """Histogram records with both clock values from this photon: masked, branch-free."""
    groups: dict = {}
    for c, x in X.items():
        for r in x.records:
            groups.setdefault((r.hist, r.bins, r.width, r.mod, r.start, r.stop), []).append(c)
    for (hist, bins, width, mod, start, stop), chans in groups.items():
        d = f"{_var(stop)} - {_var(start)}"
        d = f"({mod.replace('time', f'({d})')})" if mod else f"({d})"
        e(f"_l_i = {d} // {width}")
        e(f"_l_ok = ({_mask(chans)}) & (_l_i >= 0) & (_l_i < {bins})")
        e(f"{hist}[_l_i if _l_ok else 0] += _l_ok")
