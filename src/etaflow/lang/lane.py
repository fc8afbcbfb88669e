"""The gap lane: a file's photons run without the merge, and without a branch on their channel.

In ETA's correlation and lifetime recipes a photon pushes a start into a clock, stops a clock
and records, or records its time since the last sync. The general loop merges and dispatches
each photon on its (random) channel, and that mispredicted branch is most of its cost. The lane
is a second loop over the records of the one file, inside the same generated ``mainloop``, that
leaves exactly the state the general loop would:

* what a file channel's photon does is worked out at compile time, for its whole *expansion*:
  the file event and the copies that delay lines make of it (``emit(v, d)``, d constant), run
  inline in the merge's order (codegen._line_tail) when the next photon comes late enough;
  VIs, their sections and actions in dispatch order (spec 3.8), each clock value followed
  symbolically (``t+d`` the time of the photon's copy d ps later, ``ls+d`` that time's last
  sync, or unset: from an earlier event). A VI that tests its state takes part when the
  photon leaves it in one state whatever it was in (its actions are then masked by the state
  before);
* supported actions: clock start and stop (no argument or LAST_SYNC), and ``record`` /
  ``record_all`` into a 1-D histogram. Starts are written into the free slot at a ring's head
  (which moves by a mask on the channel), a record whose both clock values come from the
  photon is counted branch-free;
* clock values and VI states are not written per photon: where the slow branch (below) or the
  end of the lane needs them, each is found again by walking back to the last photon that set
  it (_materialize). Only a VI state that a ring or record tests is blended in per photon;
* a record from starts of earlier events cannot count when the previous event lies at least the
  histogram's range back (the *gap*): only photons closer than that take a (rare, predictable)
  branch that makes those records as the general loop does;
* the lane leaves the rest to the general loop: a channel with any other action, a photon whose
  copies are not all due before the next photon (or would lose a tie to it), a record out of
  time order (eta mode), a busy virtual channel, a window's end.

Earlier clock values never lie after the latest event time dispatched so far (``_e_hw``, kept
by the general loop): clocks only take event times, last syncs, 0 or each other's values, unless
a recipe starts a clock at a computed time, and records from such clocks are not skipped.
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
    cond: tuple | None  # the state test it needs, (VI index, state) (_test), None: always


@dataclasses.dataclass
class Expansion:
    """What one file channel's event does, as the lane runs it. Every step carries a condition
    on the state of a VI before the photon, (VI index, state) for ``now_4 == 1``, or None."""
    chn: int
    last_off: int = 0                              # the delay of its last copy (the largest)
    rings: list = dataclasses.field(default_factory=list)    # (clock, value, cond)
    sets: list = dataclasses.field(default_factory=list)     # (clock, side, value, cond), in order
    records: list = dataclasses.field(default_factory=list)  # always-on records
    slow: list = dataclasses.field(default_factory=list)     # (VI, ins, cond, delay) in a gap
    states: dict = dataclasses.field(default_factory=dict)   # VI index -> state after the photon
    olds: set = dataclasses.field(default_factory=set)       # (clock, side) a gap record reads
    gap: int = 0                                   # range of the records it skips


@dataclasses.dataclass
class LanePlan:
    expansions: dict          # file channel -> Expansion (channels some VI listens to)
    unsupported: list         # file channels the lane leaves to the general loop
    gap: int                  # a photon closer than this to the last event may record
    ahead: int                # the next record must be this much later (copies inline)
    delay: int                # the largest delay of a copy
    record_groups: list       # always-on records by operands (_record_groups)


def plan(gc) -> LanePlan | None:
    """The lane of compiler ``gc``'s group, or None where it cannot run or would not help."""
    if not (ENABLE and gc.R == 1 and gc.leaf_locals and not gc.uses_fileid
            and not gc.may_interrupt):
        return None
    if any(ins.name == "EMIT_CODE" for p in gc.parsed for sec in p.sections
           for ins in sec.instructions):
        return None     # embedded code may read or write anything
    by_chn = gc._listeners()
    unbounded = _unbounded_clocks(gc)
    rank = {f: i for i, f in enumerate(gc._tie_order())}
    file_chans = [c for c in by_chn if c < gc.vmin or not gc.V]
    expansions, unsupported, ahead = {}, [], 0
    for ch in sorted(file_chans):
        try:
            x, copies = _expand(gc, ch, by_chn, unbounded, rank)
        except _Unsupported:
            unsupported.append(ch)
            continue
        # a copy runs inline when the next record is not earlier than it (not at its time
        # either, if the copy loses a tie against the file)
        ahead = max([ahead] + [d + (rank[gc.R + v - gc.vmin] > rank[0]) for v, d in copies])
        expansions[ch] = x
    if not any(x.rings or x.records or x.sets for x in expansions.values()):
        return None     # nothing to gain
    gap = max((x.gap for x in expansions.values()), default=0)
    delay = max((x.last_off for x in expansions.values()), default=0)
    return LanePlan(expansions, unsupported, gap, ahead, delay,
                    _record_groups(gc, expansions))


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
    x = Expansion(ch)
    values: dict = {}           # (clock, side) -> 't' | 'ls' | 't+d' | 'ls+d' | COND
    vstate: dict = {}           # VI index -> its state, once this photon has moved it
    copies: list = []
    _run_event(gc, ch, by_chn, x, values, vstate, unbounded, copies, 0)
    copies.sort(key=lambda vd: rank[gc.R + vd[0] - gc.vmin])
    if [d for _, d in copies] != sorted(d for _, d in copies):
        raise _Unsupported      # a later copy due earlier waits in its queue (_line_tail)
    for v, d in copies:
        _run_event(gc, v, by_chn, x, values, vstate, unbounded, None, d)
        x.last_off = d
    return x, copies


COND = "cond"       # a clock value that depends on a VI's state


def _run_event(gc, ch, by_chn, x, values, vstate, unbounded, copies, off):
    for gi in by_chn.get(ch, []):
        p = gc.parsed[gi]
        if not gc._reads_state(gi):
            s, dst = next((s, d) for (s, c), d in sorted(p.graph.transitions.items())
                          if c == ch)
            for sec in gc._sections_run(p, s, dst, ch):
                for ins in sec.instructions:
                    _action(gc, p, ins, x, values, unbounded, copies, None, off)
            continue
        # a VI that tests its state: its code runs under a test of the state before the
        # photon, and the photon must leave it in one state whatever that was
        known = vstate.get(gi)
        ends, branches = set(), []
        for s in ([known] if known is not None else range(len(p.graph.states))):
            dst = p.graph.transitions.get((s, ch))
            ends.add(s if dst is None else dst)
            vals = dict(values)
            if dst is not None:
                cond = None if known is not None else (gi, s)
                for sec in gc._sections_run(p, s, dst, ch):
                    for ins in sec.instructions:
                        _action(gc, p, ins, x, vals, unbounded, copies, cond, off)
            branches.append(vals)
        if len(ends) != 1:
            raise _Unsupported
        vstate[gi] = x.states[gi] = ends.pop()
        if known is None:
            _merge_branches(x, gi, len(p.graph.states))
        for key in set().union(*branches):
            seen = {b.get(key) for b in branches}
            values[key] = seen.pop() if len(seen) == 1 else COND


def _merge_branches(x, gi, n_states):
    """Steps that every state of VI gi takes alike (the same clock value, one after the other)
    need no state test: ``started`` entered from either state starts the clock the same."""
    every = [(gi, s) for s in range(n_states)]
    out, i = [], 0
    while i < len(x.sets):
        run = x.sets[i:i + n_states]
        if [c for *_, c in run] == every and len({tuple(h) for *h, _ in run}) == 1:
            out.append((*run[0][:-1], None))
            i += n_states
        else:
            out.append(x.sets[i])
            i += 1
    x.sets = out


def _action(gc, p, ins, x, values, unbounded, copies, cond, off):
    """Add what instruction ``ins`` does at ``off`` ps after the photon to expansion x."""
    n = ins.name
    if ins.obj is None:
        if n in ("RFILE", "VFILE", "INTEGER", "TABLE", "CLOCK", "HISTOGRAM"):
            return
        if n == "emit" and id(ins) in gc.line_ins and copies is not None and cond is None:
            from .codegen import _int_literal
            copies.append((_int_literal(gc._arg(ins, 0, "chn")),
                           _int_literal(gc._arg(ins, 1, "waittime", "0"))))
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
        value = ("ls" if ins.args else "t") + (f"+{off}" if off else "")
        if n == "start" and sym.info["max_start"] > 1:
            if (sym.name, n) in values:
                raise _Unsupported      # two starts of one ring from one photon
            x.rings.append((sym.name, value, cond))
        else:
            x.sets.append((sym.name, n, value, cond))
            x.slow.append((p, ins, cond, off))
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
        if not multi and start not in (None, COND) and stop not in (None, COND):
            x.records.append(Record(sym.name, bins, width, mod, start, stop, cond))
            return
        # the starts were set by earlier events: nothing is recorded across the gap
        if start is None and stop and stop.startswith("t") and mod is None and \
                c.name not in unbounded:
            x.gap = max(x.gap, bins * width)
            if not multi:
                x.olds.add((c.name, "start"))
            x.slow.append((p, ins, cond, off))
            return
    raise _Unsupported


# --- code ----------------------------------------------------------------------------------------

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
    # (channel, step) pairs of every ring, clock value and VI state the lane writes
    rings, sets, states = {}, {}, {}
    for c, x in X.items():
        for clock, value, cond in x.rings:
            rings.setdefault(clock, []).append((c, value, cond))
        for clock, side, value, cond in x.sets:
            sets.setdefault((clock, side), []).append((c, value, cond))
        for gi, s in x.states.items():
            states.setdefault(gi, []).append((c, s))
    lazy = _lazy(X, sets, states)
    e("# the gap lane (lane.py): the file's photons without the merge")
    e(f"if {' and '.join(entry)}:")
    e.indent()
    e("_l_first = _e_pos0 - 1")
    e("_l_lo = _l_first      # lazy values hold what they were before this photon")
    for gi in sorted(lazy.snaps):
        e(f"_l_snap{gi} = now_{gi}")
        e(f"_l_snapf{gi} = now_{gi}")
    e("_l_t = _e_lt0")
    e("_l_c = _e_lc0")
    if lp.gap:
        e("_l_hw = _e_hw")
    for k in sorted(rings):
        e(f"_l_n_{k} = 0")
        e(f"_l_c0_{k} = ({k}_start_head - {k}_start_tail) % {k}_start_tab.shape[0]")
    e(f"while _e_pos0 < {src_t}.shape[0]:")
    e.indent()
    e(f"_l_tn = {src_t}[np.uint64(_e_pos0)]")
    if lp.ahead or not gc.exact:
        # exact mode feeds every file in time order (the task sorts): only delays and ties
        # need a look
        e(f"if _l_tn - _l_t < {lp.ahead}:")
        e("    break")
    values = [r.start for x in X.values() for r in x.records] + \
        [r.stop for x in X.values() for r in x.records] + \
        [v for steps in list(rings.values()) + list(sets.values()) for _, v, _ in steps]
    for v in sorted({v for v in values if v.startswith("ls")}):
        e(f"{_var(v)} = _rt.last_sync({_var('t' + v[2:])}, SYNCRate_pspr, _e_sync_exact, "
          "_e_exact)")
    _records(e, lp.record_groups)
    if lp.gap:
        _slow(gc, e, X, sorted(rings), lazy, src_t, src_c)
    for k, steps in sorted(rings.items()):
        # the slot at a ring's head is always free: write it whatever the channel, and move
        # the head only for a start (no branch on the random channel); an unsigned index
        # spares numba's negative-index test
        tab, head = f"{k}_start_tab", f"{k}_start_head"
        e(f"{tab}[np.uint64({head})] = {_ring_value(steps)}")
        e(f"_l_m = {_mask([(c, cond) for c, _, cond in steps])}")
        e(f"{head} += _l_m")
        e(f"_l_n_{k} += _l_m")
        e(f"if {head} == {tab}.shape[0]:")
        e(f"    {head} = 0")
    # clock values and VI states the walks cannot leave (_lazy): a masked bitwise blend per
    # step (numba turns a conditional expression into a branch on the random channel often
    # enough to cost ~0.4 ns each); the others are found again, walking back, when the slow
    # branch or the end of the lane needs them (_materialize)
    for (clock, side), steps in sorted(sets.items()):
        if (clock, side) in lazy.sets:
            continue
        for c, v, cond in steps:
            _blend(e, f"{clock}_{side}_rec", _var(v), [(c, cond)])
    for gi, moves in sorted(states.items()):
        if gi in lazy.states:
            continue
        for c, st in moves:
            _blend(e, f"now_{gi}", str(st), [(c, None)])
    if lp.gap:
        last = f"_l_t + {lp.delay}" if lp.delay else "_l_t"
        e(f"if {last} > _l_hw:")
        e(f"    _l_hw = {last}     # (a bound: the photon's last copy may come sooner)")
    e(f"_l_c = {src_c}[np.uint64(_e_pos0)]")
    e("_e_pos0 += 1")
    e("_l_t = _l_tn")
    if lp.unsupported:
        e(f"if {_chn_test('_l_c', lp.unsupported)}:")
        e("    break")
    e.dedent()
    # (AbsTime_ps and chn are not written: the general loop dispatches the record at the head,
    # always at least the window's last, before anything reads them)
    e("if _e_pos0 - 1 > _l_first:")
    e.indent()
    _tails(e, sorted(rings))
    _materialize(e, lazy, True, src_t, src_c)
    _materialize(e, lazy, False, src_t, src_c)
    if lp.gap:
        e("_e_hw = _l_hw")
    e("pass")
    e.dedent()
    e("_e_lt0 = _l_t")
    e("_e_lc0 = _l_c")
    e.dedent()


@dataclasses.dataclass
class _Lazy:
    sets: dict        # (clock, side) -> [(channel, value, cond)]: found again by walking back
    states: dict      # VI index -> [(channel, state after)]: found again by walking back
    moves: dict       # VI index -> {channel: state after} (every stateful VI in the lane)
    snaps: set        # blended VIs whose earlier state a walk needs (_l_snap<gi>, _l_snapf<gi>)
    slow: set         # lazy keys and VI indices the slow branch uses: brought up to date there


def _cond_vi(cond):
    """The VI a step's state test reads, or None."""
    return None if cond is None else cond[0]


def _test(cond, state=None):
    """Code of a state test (gi, s): ``now_<gi> == s``, or ``state == s``."""
    return f"{state or f'now_{cond[0]}'} == {cond[1]}"


def _lazy(X, sets, states) -> _Lazy:
    """Which clock values and VI states the lane leaves unwritten per photon. A value stays
    blended where the photon loop reads it (a ring or record under a state test reads that
    VI's state), or where a walk back could not settle it in one pass: steps tested on two
    VIs, or a setting channel that does not move the VI its test reads."""
    moves = {gi: dict(m) for gi, m in states.items()}
    read = {_cond_vi(cd) for x in X.values() for *_, cd in x.rings} | \
        {_cond_vi(r.cond) for x in X.values() for r in x.records}
    lazy_sets = {}
    for key, steps in sets.items():
        vis = {_cond_vi(cd) for *_, cd in steps} - {None}
        if not vis or (len(vis) == 1 and all(c in moves[next(iter(vis))] for c, *_ in steps)):
            lazy_sets[key] = steps
        else:
            read |= vis
    lazy_states = {gi: m for gi, m in states.items() if gi not in read}
    snaps = {_cond_vi(cd) for steps in lazy_sets.values() for *_, cd in steps} - {None}
    # what the slow branch reads from before the photon: the starts its records read, the VIs
    # it tests (what it writes, it writes as the walks would find it)
    slow = set().union(*(x.olds | {_cond_vi(cd) for *_, cd, _ in x.slow}
                         for x in X.values() if x.gap))
    # a value and the lazy state its walk reads are brought up to date together
    changed = True
    while changed:
        changed = False
        for key, steps in lazy_sets.items():
            for gi in {_cond_vi(cd) for *_, cd in steps} - {None}:
                if gi in lazy_states and ((key in slow) != (gi in slow)):
                    slow |= {key, gi}
                    changed = True
    slow = {k for k in slow if k in lazy_sets or k in lazy_states}
    return _Lazy(lazy_sets, lazy_states, moves, snaps - set(lazy_states), slow)


def _materialize(e, lazy: _Lazy, at_slow: bool, src_t, src_c):
    """Bring lazy values up to the photon before the current one: each walks back to the last
    photon that set it, down to _l_lo (``at_slow``: what the slow branch uses, which it keeps
    up to date from there) or _l_first (the rest, only when the lane stops). Values first, as
    their walks read the lazy states' old values."""
    lo = "_l_lo" if at_slow else "_l_first"
    for key, steps in sorted(lazy.sets.items()):
        if (key in lazy.slow) == at_slow:
            _walk_value(e, f"{key[0]}_{key[1]}_rec", steps, lazy, lo, src_t, src_c)
    for gi, m in sorted(lazy.states.items()):
        if (gi in lazy.slow) != at_slow:
            continue
        e("_l_j = _e_pos0 - 2")
        e(f"while _l_j >= {lo}:")
        e.indent()
        e(f"_l_cc = {src_c}[_l_j]")
        for i, (c, st) in enumerate(m):
            e(f"{'if' if i == 0 else 'elif'} _l_cc == {c}:")
            e(f"    now_{gi} = {st}")
            e("    break")
        e("_l_j -= 1")
        e.dedent()


def _walk_value(e, var, steps, lazy: _Lazy, lo, src_t, src_c):
    """``var`` after the last photon since ``lo`` that set it. A step tested on VI gi's state
    needs the state before its photon: that of the next older photon that moves the VI (every
    setting channel does), or the state at ``lo``; one pass back settles both."""
    by_c: dict = {}
    for c, v, cond in steps:
        by_c.setdefault(c, []).append((v, cond))
    vis = {_cond_vi(cd) for *_, cd in steps} - {None}
    t = f"{src_t}[_l_p]"
    e("_l_j = _e_pos0 - 2")
    if not vis:     # no state test: the last photon on a setting channel
        e(f"while _l_j >= {lo}:")
        e.indent()
        e(f"_l_cc = {src_c}[_l_j]")
        for i, (c, vs) in enumerate(by_c.items()):
            e(f"{'if' if i == 0 else 'elif'} _l_cc == {c}:")
            e(f"    {var} = {_var(vs[-1][0], f'{src_t}[_l_j]')}")
            e("    break")
        e("_l_j -= 1")
        e.dedent()
        return
    gi = vis.pop()
    moves = lazy.moves[gi]
    before = f"now_{gi}" if gi in lazy.states else \
        (f"_l_snap{gi}" if lo == "_l_lo" else f"_l_snapf{gi}")
    e("_l_p = -1     # a setting photon whose state before is not known yet")
    e("_l_pc = -1")
    e("while True:")
    e.indent()
    e(f"_l_cc = np.int64({src_c}[_l_j]) if _l_j >= {lo} else np.int64(-1)")
    e(f"if _l_p >= 0 and (_l_j < {lo} or {_chn_test('_l_cc', moves)}):")
    e.indent()
    e(f"_l_s = {before}")
    for c, st in moves.items():
        e(f"if _l_cc == {c}:")
        e(f"    _l_s = {st}")
    e("_l_ok = False")
    for i, (c, vs) in enumerate(by_c.items()):
        e(f"{'if' if i == 0 else 'elif'} _l_pc == {c}:")
        e.indent()
        # the photon's last step whose test holds gives the value
        for k, (v, cond) in enumerate(reversed(vs)):
            test = "True" if cond is None else _test(cond, "_l_s")
            e(f"{'if' if k == 0 else 'elif'} {test}:")
            e(f"    {var} = {_var(v, t)}")
            e("    _l_ok = True")
        e.dedent()
    e("if _l_ok:")
    e("    break")
    e("_l_p = -1")
    e.dedent()
    e(f"if _l_j < {lo}:")
    e("    break")
    e(f"if {_chn_test('_l_cc', by_c)}:")
    e("    _l_p = _l_j")
    e("    _l_pc = _l_cc")
    e("_l_j -= 1")
    e.dedent()


def _tails(e, rings):
    """A ring keeps at most size-1 values (runtime.ring_append): its tail follows from the
    count."""
    for k in rings:
        tab, head, tail = f"{k}_start_tab", f"{k}_start_head", f"{k}_start_tail"
        e(f"{tail} = ({head} - min(_l_c0_{k} + _l_n_{k}, {tab}.shape[0] - 1)) % {tab}.shape[0]")


def _slow(gc, e, X, rings, lazy: _Lazy, src_t, src_c):
    """A photon less than a histogram's range after the previous event: its clock stops and
    the records it could make run as in the general loop (before this photon's own starts,
    which its records cannot see: _action refuses such expansions). The lazy values are
    brought up to here first; the walks then start again from this photon."""
    chans = [c for c, x in X.items() if x.gap]
    e(f"if _l_t - _l_hw < {max(X[c].gap for c in chans)}:")
    e.indent()
    _tails(e, rings)
    if lazy.slow:
        _materialize(e, lazy, True, src_t, src_c)
        e("_l_lo = _e_pos0 - 1")
        for gi in sorted(lazy.snaps):
            e(f"_l_snap{gi} = now_{gi}")
    for i, c in enumerate(chans):
        e(f"{'if' if i == 0 else 'elif'} _l_c == {c}:")
        e.indent()
        for p, ins, cond, off in X[c].slow:
            e(f"AbsTime_ps = {_var('t+' + str(off) if off else 't')}")
            if cond:
                e(f"if {_test(cond)}:")
                e.indent()
            gc._action(p, ins, triggered=True)
            if cond:
                e("pass")
                e.dedent()
        e("pass")
        e.dedent()
    e.dedent()


def _blend(e, var, value, pairs):
    """``var = value`` where the photon matches one of ``pairs``, without a branch."""
    e(f"{var} ^= ({var} ^ {value}) & -np.int64({_mask(pairs)})")


def _var(v, t=None):
    """Code of a value: ``t``/``ls`` the photon's time/last sync, ``t+d``/``ls+d`` those of its
    copy d ps later; of the photon in the loop, or of the one whose time is ``t``."""
    kind, _, off = v.partition("+")
    if kind not in ("t", "ls"):
        return v
    at = f"({t or '_l_t'} + {off})" if off else (t or "_l_t")
    if kind == "t":
        return at
    if t is None:
        return f"_l_ls{off}"
    return f"_rt.last_sync({at}, SYNCRate_pspr, _e_sync_exact, _e_exact)"


def _mask(pairs):
    """Whether the photon's channel (and the state before it) is one of (channel, cond)."""
    return " | ".join(f"((_l_c == {c}) & ({_test(cond)}))" if cond else f"(_l_c == {c})"
                      for c, cond in pairs)


def _ring_value(steps):
    """The start a photon writes into a ring, chosen by channel without a branch (mostly one
    value for every channel: its time)."""
    vals = [_var(v) for _, v, _ in steps]
    out = vals[0]
    for (c, _, cond), v in zip(steps[1:], vals[1:]):
        if v != out:
            out = f"({v} if {_mask([(c, cond)])} else {out})"
    return out


def _record_groups(gc, X):
    """Always-on records by operands: [(key, [(channel, cond, hist)], scratch or None)]. A
    group whose histograms are never cleared counts into a private array (``scratch``), one row
    per histogram and one spare row, added to the histograms when a run ends: a photon
    then increments one real bin, never a dummy bin 0 whose every increment would wait for the
    previous one (a chain through memory that cost ~3 ns a photon)."""
    groups: dict = {}
    for c, x in X.items():
        for r in x.records:
            key = (r.bins, r.width, r.mod, r.start, r.stop)
            groups.setdefault(key, []).append((c, r.cond, r.hist))
    cleared = {b for p in gc.parsed for sec in p.sections for ins in sec.instructions
               if ins.obj is not None and ins.name == "clear" for b, _ in gc._objects(ins.obj)}
    out = []
    for g, (key, pairs) in enumerate(groups.items()):
        hists = {h for _, _, h in pairs}
        out.append((key, pairs, None if hists & cleared else f"_l_scratch{g}"))
    return out


def _rows(pairs):
    hists = []
    for _, _, h in pairs:
        if h not in hists:
            hists.append(h)
    return hists


def scratch_tables(lp: LanePlan):
    """The private count arrays as task tables [(name, shape, dtype)], and what run_task adds
    to the histograms when a run ends [(histogram, scratch, offset, bins)]. They belong to the
    task, not to one mainloop call: a call covers one chunk (64 k events at most), and
    zeroing 800 KB and adding 50 k bins per call (a 50 k-bin histogram) would cost about 1 ns
    per record (an estimate from memory bandwidth)."""
    tables, flush = [], []
    for (bins, *_), pairs, scratch in lp.record_groups:
        if scratch:
            rows = _rows(pairs)
            tables.append((scratch, ((len(rows) + 1) * bins,), "int64"))
            flush += [(h, scratch, r * bins, bins) for r, h in enumerate(rows)]
    return tables, flush


def prologue(gc, lp: LanePlan):
    for (bins, *_), pairs, scratch in lp.record_groups:
        if scratch and all(cond is None for _, cond, _ in pairs):
            # where a channel's photon counts: one load instead of a test per channel
            rows = _rows(pairs)
            gc.e(f"{scratch}_at = np.full(256, {len(rows) * bins}, np.int64)")
            for c, _, h in pairs:
                gc.e(f"{scratch}_at[{c}] = {rows.index(h) * bins}")


def _records(e, record_groups):
    """Histogram records with both clock values from this photon: branch-free."""
    for (bins, width, mod, start, stop), pairs, scratch in record_groups:
        d = f"{_var(stop)} - {_var(start)}"
        d = f"({mod.replace('time', f'({d})')})" if mod else f"({d})"
        e(f"_l_i = {d} // {width}")
        if scratch:
            rows = _rows(pairs)
            if all(cond is None for _, cond, _ in pairs):
                at = f"{scratch}_at[np.uint64(_l_c)]"
            else:
                at = str(len(rows) * bins)
                for c, cond, h in reversed(pairs):
                    at = f"({rows.index(h) * bins} if {_mask([(c, cond)])} else {at})"
            e(f"_l_ok = (_l_i >= 0) & (_l_i < {bins})")
            # unsigned indices (never negative here): numba's negative-index fix-up per access
            # cost ~0.5 ns a photon
            e(f"{scratch}[np.uint64({at} + (_l_i if _l_ok else 0))] += _l_ok")
            continue
        for c, cond, h in pairs:
            e(f"_l_ok = ({_mask([(c, cond)])}) & (_l_i >= 0) & (_l_i < {bins})")
            e(f"{h}[np.uint64(_l_i if _l_ok else 0)] += _l_ok")
