"""Compile the VIs of one recipe group into the Python source of a numba ``mainloop``.

One group = one program (spec 3.2). The generated function runs the merge loop of spec 4.4 with
the per-event dispatch of spec 3.8; tool actions follow spec 3.7. The two result modes are
switches here, not two engines:

========================  ================================  ================================
behaviour                 ``eta`` (ETA 0.9.9, bit for bit)  ``exact`` (physically right)
========================  ================================  ================================
clock ring capacity       declared size - 1                 declared size
record_all                skips ring slot 0 when wrapped    visits every start
virtual-channel queue     FIFO, emptied at window entry     time-sorted, kept across windows
code before 1st header    runs at every window entry        runs once per task
end of the data           pending events dropped            pending events drained
========================  ================================  ================================

Everything else (tie rule, dispatch order, binning arithmetic) is shared.

Speed comes from keeping the loop small, not from changing what it computes: delay lines
(``emit(v, d)`` copies) skip the queue when their copy wins the merge anyway (_find_lines);
code a group cannot need is not generated (interrupt checks, the state of a VI that never tests
it, ETA's previous-state variable, ``fileid`` unless mentioned), because the loop is bound by the
number of variables it carries from event to event more than by arithmetic. Where a group allows
it, the file's photons bypass this loop altogether: the gap lane (lane.py) runs them without
the merge and without a branch on their channel, leaving the same state.
"""

from __future__ import annotations

import ast
import dataclasses
import keyword

from ..errors import RecipeError
from . import lane
from .parse import Instruction, ParsedVI, parse_vi

__all__ = ["GroupProgram", "compile_group_source"]

INF = 9223372036854775807
DEFAULT_VFILE_SIZE = 2097152

KNOWN_KEYWORDS = {"name", "signal_channels", "marker_channels", "chn", "size", "init_value",
                  "dimension", "type", "max_start", "max_stop", "dims", "extra_dims", "num_slots",
                  "flag_name", "threshold", "waittime", "period", "repeat"}

# delay lines skip the queue (see GroupCompiler._find_lines); tests switch it off to compare
FUSE_LINES = True

# up to this many sources keep their pending head events in local variables (registers)
LOCAL_LEAVES = 6

# engine scalars at fixed positions of S
S_ABSTIME, S_FILEID, S_CHN, S_INTERRUPT, S_FIRST, S_RET, S_SYNC = range(7)
S_FIXED = 8

# ETA's result-name filter (spec 4.9), applied in eta mode only
ETA_RESULT_BLACKLIST = ("now_", "last_", "POOL_", "_start", "_stop", "VCHN", "READER", "VFILES",
                        "_vfile", "AbsTime_ps", "fileid", "chn", "chn_next", "INTERRUPT")


@dataclasses.dataclass
class Symbol:
    kind: str           # RFILE INTEGER TABLE CLOCK HISTOGRAM COINCIDENCE VFILE
    name: str
    vi: str
    line: int
    info: dict


@dataclasses.dataclass
class GroupProgram:
    """Everything the engine needs to run one compiled group."""

    group: str
    mode: str
    source: str                     # the generated module text
    scalars: dict                   # name -> (index, initial value) in S
    n_scalars: int
    tables: list                    # [(arg name, shape tuple, dtype str)] in argument order
    results: list                   # [(result name, kind, storage name)] kind: 'table'|'scalar'|'rfile'
    rfiles: list                    # [(name, id, channel offset, marker offset)]
    vchannels: list                 # [(channel, queue capacity)] by slot (gaps get capacity 1)
    vchn_offset: int
    n_leaves: int
    sync_from_rfile0: bool
    line_map: list = dataclasses.field(default_factory=list)   # generated line -> (vi, line)
    sync_uses: list = dataclasses.field(default_factory=list)  # (vi, line, source) of LAST_SYNC..
    vi_sources: dict = dataclasses.field(default_factory=dict)  # vi -> substituted code text
    # the gap lane's private counts, added to histograms when a run ends (lane.scratch_tables)
    lane_flush: list = dataclasses.field(default_factory=list)  # (hist, scratch, offset, bins)


def _int_literal(text: str):
    try:
        v = ast.literal_eval(text)
    except Exception:
        return None
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v)
    return None


def _fnum(text: str, what, ins, vi):
    """ETA reads bins and widths with int(float(text))."""
    try:
        return int(float(ast.literal_eval(text)))
    except Exception:
        raise RecipeError(f"{what} must be a number, got {text!r}", vi=vi, line=ins.line,
                          column=ins.col) from None


class _Emitter:
    """Indented source lines with a line map (generated line -> (vi, recipe line))."""

    def __init__(self):
        self.lines: list[str] = []
        self.where: list = []
        self.depth = 0
        self.current = None          # (vi, recipe line) of the action being generated

    def __call__(self, text: str, where=None):
        for part in text.split("\n"):
            self.lines.append("    " * self.depth + part)
            self.where.append(where if where is not None else self.current)

    def indent(self):
        self.depth += 1

    def dedent(self):
        self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class GroupCompiler:
    def __init__(self, group: str, vis: list, params: dict, mode: str):
        if mode not in ("exact", "eta"):
            raise ValueError(f"mode must be 'exact' or 'eta', not {mode!r}")
        self.group, self.mode = group, mode
        self.exact = mode == "exact"
        self.params = params
        self.parsed: list[ParsedVI] = []
        for name, graph in vis:
            code = graph.get("usercode", "") or ""
            for k, v in params.items():
                code = code.replace(f"`{k}`", str(v))
            self.parsed.append(parse_vi(name, graph, code))
        self.symbols: dict[str, Symbol] = {}
        self.rfiles: list[Symbol] = []
        self.vfiles: dict[int, int] = {}     # channel -> queue size
        self.scalars: dict[str, tuple[int, int]] = {}
        self.tables: list = []
        self.sync_uses: list = []     # where the code needs the sync period of RFILE 0
        self._state_read: dict = {}   # VI index -> whether its dispatch tests its state

    # --- errors -------------------------------------------------------------------------------
    def err(self, msg, vi, ins: Instruction | None = None):
        src = None
        if ins is not None:
            for p in self.parsed:
                if p.name == vi:
                    lines = p.source.split("\n")
                    if 0 < ins.line <= len(lines):
                        src = lines[ins.line - 1]
        return RecipeError(msg, vi=vi, line=ins.line if ins else None,
                           column=ins.col if ins else None, source_line=src)

    # --- pass 1: declarations -----------------------------------------------------------------
    def _arg(self, ins, i, name, default=None, required=True):
        if i < len(ins.args):
            return ins.args[i]
        if name in ins.kwargs:
            return ins.kwargs[name]
        # ETA passes keyword arguments on as positional text, so a misspelt keyword such as
        # INTEGER(x, initvalue=5) fills the next position: do the same for unknown keywords
        unknown = [v for k, v in ins.kwargs.items() if k not in KNOWN_KEYWORDS]
        if i - len(ins.args) < len(unknown):
            return unknown[i - len(ins.args)]
        if default is not None or not required:
            return default
        raise RecipeError(f"{ins.name}() needs its argument {name!r}", line=ins.line,
                          column=ins.col)

    def _declare(self, kind, name, vi, ins, **info):
        if not name.isidentifier() or keyword.iskeyword(name):
            raise self.err(f"{kind} name {name!r} is not a valid identifier", vi, ins)
        old = self.symbols.get(name)
        if old is not None:
            if old.vi != vi:
                raise self.err(f"symbol {name!r} is already declared by VI {old.vi!r} "
                               f"(line {old.line}); names are shared by all VIs of a group", vi, ins)
            if old.kind != kind:
                raise self.err(f"{name!r} is already a {old.kind}; cannot redeclare it as {kind}",
                               vi, ins)
        sym = Symbol(kind, name, vi, ins.line, info)
        self.symbols[name] = sym
        return sym

    def declarations(self):
        for p in self.parsed:
            for sec in p.sections:
                for ins in sec.instructions:
                    self._declaration(p.name, ins)
        # infer_start_from_stop(SYNC) writes the INTEGER common_start (spec 3.7)
        for p in self.parsed:
            for sec in p.sections:
                for ins in sec.instructions:
                    if ins.name == "infer_start_from_stop" and "common_start" not in self.symbols:
                        self._declare("INTEGER", "common_start", p.name, ins, init=0)
        # emits to literal channels declare virtual channels implicitly
        for p in self.parsed:
            for sec in p.sections:
                for ins in sec.instructions:
                    if ins.name == "emit" and ins.obj is None:
                        ch = _int_literal(self._arg(ins, 0, "chn"))
                        if ch is not None:
                            self.vfiles.setdefault(ch, DEFAULT_VFILE_SIZE)

    def _declaration(self, vi, ins: Instruction):
        n = ins.name
        if ins.obj is not None:
            return
        if n == "RFILE":
            name = self._arg(ins, 0, "name")
            sig = self._list(self._arg(ins, 1, "signal_channels", "[0,1,2,3]"), vi, ins)
            mar = self._list(self._arg(ins, 2, "marker_channels", "[]"), vi, ins)
            for lst in (sig, mar):
                if lst and lst != list(range(lst[0], lst[0] + len(lst))):
                    raise self.err(f"RFILE channel list {lst} must be contiguous and ascending",
                                   vi, ins)
            if name in self.symbols:
                raise self.err(f"RFILE {name!r} is declared twice", vi, ins)
            used = {c for r in self.rfiles for c in r.info["channels"]}
            for c in sig + mar:
                if c in used:
                    raise self.err(f"channel {c} already belongs to another RFILE", vi, ins)
            sym = self._declare("RFILE", name, vi, ins, id=len(self.rfiles), channels=sig + mar,
                                offset=sig[0] if sig else 0, marker_offset=mar[0] if mar else 0)
            self.rfiles.append(sym)
        elif n == "VFILE":
            ch = _int_literal(self._arg(ins, 0, "chn"))
            if ch is None or not 0 <= ch <= 254:
                raise self.err("VFILE(chn, size): chn must be a channel number 0..254", vi, ins)
            size = _int_literal(self._arg(ins, 1, "size", str(DEFAULT_VFILE_SIZE)))
            if size is None or size < 2:
                raise self.err("VFILE size must be an integer >= 2", vi, ins)
            self.vfiles.setdefault(ch, size)
        elif n == "INTEGER":
            name = self._arg(ins, 0, "name")
            init = self._arg(ins, 1, "init_value", "0")
            v = _int_literal(init)
            if v is None:
                raise self.err(f"INTEGER initial value must be an integer, got {init!r}", vi, ins)
            self._declare("INTEGER", name, vi, ins, init=v)
        elif n == "TABLE":
            name = self._arg(ins, 0, "name")
            dims = self._list(self._arg(ins, 1, "dimension"), vi, ins)
            dtype = self._arg(ins, 2, "type", "'int64'").strip("'\"")
            self._declare("TABLE", name, vi, ins, shape=tuple(dims), dtype=dtype)
        elif n == "CLOCK":
            name = self._arg(ins, 0, "name")
            ns = _int_literal(self._arg(ins, 1, "max_start", "1"))
            np_ = _int_literal(self._arg(ins, 2, "max_stop", "1"))
            if ns is None or np_ is None or ns < 1 or np_ < 1:
                raise self.err("CLOCK(name, max_start=1, max_stop=1): sizes must be integers >= 1",
                               vi, ins)
            self._declare("CLOCK", name, vi, ins, max_start=ns, max_stop=np_)
        elif n == "HISTOGRAM":
            name = self._arg(ins, 0, "name")
            dims_text = self._arg(ins, 1, "dims")
            try:
                dims = ast.literal_eval(dims_text)
            except Exception:
                raise self.err(f"HISTOGRAM dims must be (bins, width[, modifier]) or a list of "
                               f"them, got {dims_text!r}", vi, ins) from None
            if isinstance(dims, tuple):
                dims = [dims]
            parsed = []
            for d in dims:
                if not isinstance(d, (tuple, list)) or len(d) not in (2, 3):
                    raise self.err(f"HISTOGRAM dimension {d!r} must be (bins, width[, modifier])",
                                   vi, ins)
                bins = int(float(d[0]))
                width = int(float(d[1]))
                if bins <= 0 or width <= 0:
                    raise self.err(f"HISTOGRAM bins and width must be positive, got {d!r}", vi, ins)
                parsed.append((bins, width, d[2] if len(d) == 3 else None))
            extra = self._arg(ins, 2, "extra_dims", None, required=False)
            extra = self._list(extra, vi, ins) if extra else []
            self._declare("HISTOGRAM", name, vi, ins, dims=parsed, extra=extra)
        elif n == "COINCIDENCE":
            name = self._arg(ins, 0, "name")
            slots = _int_literal(self._arg(ins, 1, "num_slots"))
            flag = self._arg(ins, 2, "flag_name")
            thr = _int_literal(self._arg(ins, 3, "threshold", "-1"))
            if slots is None or slots <= 0:
                raise self.err("COINCIDENCE num_slots must be a positive integer", vi, ins)
            if not flag.isidentifier():
                raise self.err(f"COINCIDENCE flag_name {flag!r} must be a name (an INTEGER is "
                               "created with it), e.g. COINCIDENCE(cc, 2, cc_flag)", vi, ins)
            if thr is None:
                raise self.err("COINCIDENCE threshold must be an integer (ps)", vi, ins)
            self._declare("COINCIDENCE", name, vi, ins, slots=slots, flag=flag,
                          threshold=2147483647 if thr < 0 else thr)
            self._declare("INTEGER", flag, vi, ins, init=0)

    def _list(self, text, vi, ins):
        try:
            v = ast.literal_eval(text) if isinstance(text, str) else text
        except Exception:
            raise self.err(f"expected a list of integers, got {text!r}", vi, ins) from None
        if isinstance(v, int):
            v = [v]
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) for x in v):
            raise self.err(f"expected a list of integers, got {text!r}", vi, ins)
        return list(v)

    # --- layout ---------------------------------------------------------------------------------
    def layout(self):
        self.R = len(self.rfiles)
        rmax = max((c for r in self.rfiles for c in r.info["channels"]), default=-1)
        for ch in self.vfiles:
            if ch <= rmax:
                raise RecipeError(f"virtual channel {ch} is not above every RFILE channel (largest "
                                  f"{rmax}): all RFILE channels must be smaller than any virtual "
                                  "channel")
        if self.vfiles:
            self.vmin, vmax = min(self.vfiles), max(self.vfiles)
            self.V = vmax - self.vmin + 1
        else:
            self.vmin, self.V = 0, 0
        self.n = self.R + self.V
        # leaf f (pending head event of source f): time at S[LTB + f], channel at S[LCB + f];
        # few leaves live in local variables (registers) inside the loop, many stay in S
        self.leaf_locals = self.n <= LOCAL_LEAVES
        self.LTB, self.LCB = S_FIXED, S_FIXED + self.n
        for f in range(self.n):
            self.scalars[f"_e_lt{f}"] = (self.LTB + f, INF)
            self.scalars[f"_e_lc{f}"] = (self.LCB + f,
                                         self.vmin + f - self.R if f >= self.R else 255)
        idx = S_FIXED + 2 * self.n
        for i in range(self.R):
            for what in ("pos", "needpop", "done"):
                self.scalars[f"_e_{what}{i}"] = (idx, 1 if what == "needpop" else 0)
                idx += 1
        for gi, p in enumerate(self.parsed):
            self.scalars[f"now_{gi}"] = (idx, p.graph.initial)
            self.scalars[f"last_{gi}"] = (idx + 1, p.graph.initial)
            idx += 2
        for s in self.symbols.values():
            if s.kind == "INTEGER":
                self.scalars[s.name] = (idx, s.info["init"])
                idx += 1
            elif s.kind == "CLOCK":
                for side in ("start", "stop"):
                    size = s.info[f"max_{side}"]
                    self.scalars[f"{s.name}_{side}_rec"] = (idx, 0)
                    idx += 1
                    if size > 1:
                        self.scalars[f"{s.name}_{side}_head"] = (idx, 0)
                        self.scalars[f"{s.name}_{side}_tail"] = (idx + 1, 0)
                        idx += 2
                        slots = size + 1 if self.exact else size
                        self.tables.append((f"{s.name}_{side}_tab", (slots,), "int64"))
        for s in self.symbols.values():
            if s.kind == "HISTOGRAM":
                shape = tuple(s.info["extra"]) + tuple(b for b, _, _ in s.info["dims"])
                self.tables.append((s.name, shape, "int64"))
            elif s.kind == "TABLE":
                self.tables.append((s.name, s.info["shape"], s.info["dtype"]))
            elif s.kind == "COINCIDENCE":
                self.tables.append((s.name, (s.info["slots"],), "int64"))
        self.n_scalars = idx

    # --- pass 2: code ---------------------------------------------------------------------------
    def generate(self) -> GroupProgram:
        self.declarations()
        self.layout()
        self._find_lines()
        # the source of the current event is kept only for code that can read it
        self.uses_fileid = any("fileid" in p.source for p in self.parsed)
        # without interrupt(), abort() or code that sets INTERRUPT, the checks are left out
        self.may_interrupt = any(
            ins.name in ("interrupt", "abort") or
            (ins.name in ("EMIT_CODE", "ASSIGN") and "INTERRUPT" in (ins.code + ins.target))
            for p in self.parsed for sec in p.sections for ins in sec.instructions)
        self.lane = lane.plan(self)
        self.lane_flush = []
        if self.lane:
            scratch, self.lane_flush = lane.scratch_tables(self.lane)
            self.tables += scratch
        if self.lane and self.lane.gap:
            # the latest event time dispatched so far: no clock value lies beyond it
            self.scalars["_e_hw"] = (self.n_scalars, 0)
            self.n_scalars += 1
        e = _Emitter()
        self.e = e
        # the group's name stays out of the source: identical groups share one compiled program
        e(f"# etaflow generated program, mode {self.mode!r}. Do not edit.")
        e("import math, cmath")
        e("import numpy as np")
        e("import numba as nb")
        e("from etaflow.engine import runtime as _rt")
        e("INF = 9223372036854775807")
        e(f"_E_ORDER = {tuple(self._tie_order()[1:])!r}   # sources by tie priority (spec 4.2)")
        e("")
        tables = ", ".join(t[0] for t in self.tables)
        srcs = ", ".join(f"_e_src{r}_t, _e_src{r}_c" for r in range(self.R))
        args = ", ".join(a for a in ("S, VQ, VQI, _e_entry, _e_sync_exact", tables, srcs) if a)
        e("@nb.njit(nogil=True, cache=True)")
        e(f"def mainloop({args}):")
        e.indent()
        e(f"_e_exact = {self.exact}")
        e("AbsTime_ps = S[%d]" % S_ABSTIME)
        e("fileid = S[%d]" % S_FILEID)
        e("chn = S[%d]" % S_CHN)
        e("SYNCRate_pspr = S[%d]" % S_SYNC)
        e("INTERRUPT = 0")
        e("eta_ret = 0")
        e("_e_ret = -1")
        e("_e_go = True")
        for name, (i, _) in self._local_scalars():
            e(f"{name} = S[{i}]")
        for v in sorted(self.line_targets):
            e(f"_e_fzt{v} = INF")
        if self.lane:
            lane.prologue(self, self.lane)
        # first entry: code before the first header runs once (exact mode)
        e(f"if S[{S_FIRST}] == 0:")
        e.indent()
        e(f"S[{S_FIRST}] = 1")
        if self.exact:
            self._beforeloop()
        e("pass")
        e.dedent()
        e("if _e_entry:")
        e.indent()
        if not self.exact:
            e("_rt.vq_reset_all(VQI)")
            self._beforeloop()
        e("pass")
        e.dedent()
        for r in range(self.R):
            e(f"if _e_go and _e_needpop{r}:")
            e.indent()
            e(f"if _e_pos{r} < _e_src{r}_t.shape[0]:")
            e(f"    {self._lt(r)} = _e_src{r}_t[_e_pos{r}]")
            e(f"    {self._lc(r)} = _e_src{r}_c[_e_pos{r}]")
            e(f"    _e_pos{r} += 1")
            e(f"    _e_needpop{r} = 0")
            e(f"elif _e_done{r}:")
            e(f"    {self._lt(r)} = INF")
            e(f"    _e_needpop{r} = 0")
            e("else:")
            e(f"    _e_ret = {r}")
            e("    _e_go = False")
            e.dedent()
        order = self._tie_order()
        if not self.R:
            e("_e_budget = 1 << 20")
        e("while _e_go:")
        e.indent()
        if not self.R:
            # a group without files never waits for data: hand control back now and then so
            # a stop request or Ctrl-C can end a long simulation
            e("_e_budget -= 1")
            e("if _e_budget < 0:")
            e("    _e_ret = -4")
            e("    break")
        if self.lane:
            lane.emit(self, self.lane)
        # the next event: smallest time; on equal times ETA's tournament tree lets the leaf
        # with the largest key win (spec 4.2), so leaves are scanned in that order with '<'
        if self.leaf_locals:
            f0 = order[0]
            e(f"_e_t = _e_lt{f0}")
            e(f"_e_f = {f0}")
            e(f"_e_c = {self._leaf_chn(f0)}")
            for f in order[1:]:
                e(f"if _e_lt{f} < _e_t:")
                e(f"    _e_t = _e_lt{f}")
                e(f"    _e_f = {f}")
                e(f"    _e_c = {self._leaf_chn(f)}")
        else:
            e(f"_e_t = S[{self.LTB + order[0]}]")
            e(f"_e_f = {order[0]}")
            e("for _e_g in _E_ORDER:")
            e(f"    if S[{self.LTB} + _e_g] < _e_t:")
            e(f"        _e_t = S[{self.LTB} + _e_g]")
            e("        _e_f = _e_g")
            e(f"_e_c = S[{self.LCB} + _e_f]")
        e("if _e_t == INF:")
        e("    _e_ret = -1")
        e("    break")
        e("chn = _e_c")
        if self.uses_fileid:
            e("fileid = _e_f")
        e("AbsTime_ps = _e_t")
        self._high_water()
        # a virtual channel's next queued event replaces its head before the event is processed
        if self.leaf_locals:
            for f in range(self.R, self.n):
                e(f"{'if' if f == self.R else 'elif'} _e_f == {f}:")
                e(f"    _e_lt{f} = _rt.vq_pop(VQ, VQI, {f - self.R})")
        elif self.V:
            e(f"if _e_f >= {self.R}:")
            e(f"    S[{self.LTB} + _e_f] = _rt.vq_pop(VQ, VQI, _e_f - {self.R})")
        self._dispatch()
        if self.may_interrupt:
            e("if INTERRUPT:")
            e.indent()
            self._interrupted()
            e.dedent()
        self._next_record()
        e.dedent()
        # store
        e(f"S[{S_ABSTIME}] = AbsTime_ps")
        e(f"S[{S_FILEID}] = fileid")
        e(f"S[{S_CHN}] = chn")
        for name, (i, _) in self._local_scalars():
            e(f"S[{i}] = {name}")
        e(f"S[{S_RET}] += eta_ret")
        e("return _e_ret")
        e.dedent()
        return self._program(e.text())

    def _program(self, source) -> GroupProgram:
        results = []
        for r in self.rfiles:
            results.append((r.name, "rfile", r.name))
        for s in self.symbols.values():
            if s.kind in ("HISTOGRAM", "TABLE", "COINCIDENCE"):
                results.append((s.name, "table", s.name))
            elif s.kind == "INTEGER":
                results.append((s.name, "scalar", s.name))
        if not self.exact:
            results = [x for x in results if x[1] == "rfile" or
                       not any(b in x[0] for b in ETA_RESULT_BLACKLIST)]
        vch = []
        for v in range(self.V):
            ch = self.vmin + v
            vch.append((ch, self.vfiles.get(ch, 1) - (0 if self.exact else 1)))
        return GroupProgram(
            group=self.group, mode=self.mode, source=source, scalars=dict(self.scalars),
            n_scalars=self.n_scalars, tables=list(self.tables), results=results,
            rfiles=[(r.name, r.info["id"], r.info["offset"], r.info["marker_offset"])
                    for r in self.rfiles],
            vchannels=vch, vchn_offset=self.vmin, n_leaves=self.n,
            sync_from_rfile0=bool(self.R), line_map=list(self.e.where),
            sync_uses=list(self.sync_uses),
            vi_sources={p.name: p.source for p in self.parsed},
            lane_flush=list(self.lane_flush))

    def _high_water(self):
        if "_e_hw" in self.scalars:
            self.e("if AbsTime_ps > _e_hw:")
            self.e("    _e_hw = AbsTime_ps")

    def _interrupted(self, from_file=True):
        """Leave the loop after interrupt()/abort(); the file an event came from is re-popped
        on resume (spec 4.4). ``from_file=False``: the event was a copy run inline, whose
        file has already popped its next record."""
        e = self.e
        for r in range(self.R if from_file else 0):
            e(f"if _e_f == {r}:")
            e(f"    _e_needpop{r} = 1")
        e("_e_ret = -3 if AbsTime_ps == INF else -2")
        e("break")

    def _next_record(self, before_break=None, from_file=False):
        """Replace the head of the file the event came from with its next record; at the end of
        the window leave the loop (the caller feeds the next one). ``from_file``: the event is
        known to come from a file (a file channel's block), so with one file no test is needed."""
        e = self.e
        test = not (from_file and self.R == 1)
        for r in range(self.R):
            if test:
                e(f"if _e_f == {r}:")
                e.indent()
            e(f"if _e_pos{r} < _e_src{r}_t.shape[0]:")
            e(f"    {self._lt(r)} = _e_src{r}_t[_e_pos{r}]")
            e(f"    {self._lc(r)} = _e_src{r}_c[_e_pos{r}]")
            e(f"    _e_pos{r} += 1")
            e("else:")
            e.indent()
            if before_break:
                before_break()
            e(f"_e_needpop{r} = 1")
            e(f"_e_ret = {r}")
            e("break")
            e.dedent()
            if test:
                e.dedent()

    # --- delay lines -------------------------------------------------------------------------------
    def _find_lines(self):
        """Find the delay lines: VIs of one state that only copy file channels into virtual
        channels a constant time later (``emit(v, d)``, d a literal >= 0, often 0), the delay
        lines of ETA's correlation and lifetime recipes.

        Their copies skip the queue: after the file event has run and its file has popped the
        next record, each copy that wins the merge against every pending head (the rule of
        spec 4.2, evaluated on the spot) runs at once, with its channel known statically; a copy
        that does not win (a file event comes first, or an earlier copy still waits) is queued
        as any emit. The order of events is the merge's, so results do not change; a photon
        costs one loop iteration instead of two whenever its copy is due before the next
        photon."""
        self.line_ins: set = set()          # id() of the emit instructions of lines
        self.line_targets: set = set()
        self._line_copies: list = []        # copies made by the block being generated
        if not (FUSE_LINES and self.R and self.V and self.leaf_locals):
            return
        emits = [(p, ins) for p in self.parsed for sec in p.sections for ins in sec.instructions
                 if ins.obj is None and ins.name in ("emit", "cancel_emit")]
        if any(ins.name == "cancel_emit" or _int_literal(self._arg(ins, 0, "chn")) is None
               for _, ins in emits):
            return     # a computed channel or a cancel may touch any copy: keep the queues
        found = {id(p): self._line_emits(p) for p in self.parsed}
        lines = [p for p in self.parsed if found[id(p)] is not None]
        other = {_int_literal(self._arg(ins, 0, "chn")) for p, ins in emits if p not in lines}
        lines = [p for p in lines if not (found[id(p)][1] & other)]
        per_chn: dict = {}
        for p in lines:
            for ch, targets in found[id(p)][0].items():
                per_chn.setdefault(ch, []).extend(targets)
        if any(len(t) != len(set(t)) for t in per_chn.values()):
            return     # two copies of one event into one channel: leave it to the queue
        for p in lines:
            for sec in p.sections:
                for ins in sec.instructions:
                    if ins.name == "emit":
                        self.line_ins.add(id(ins))
            self.line_targets |= found[id(p)][1]

    def _line_emits(self, p: ParsedVI):
        """({file channel: [virtual channels]}, targets) if VI p is a delay line, else None."""
        if len(p.graph.states) != 1 or not p.graph.transitions:
            return None
        for sec in p.sections:
            for ins in sec.instructions:
                if ins.obj is not None:
                    return None
                if not sec.triggers:
                    if ins.name != "VFILE":
                        return None
                    continue
                if ins.name != "emit":
                    return None
                wait = _int_literal(self._arg(ins, 1, "waittime", "0"))
                period = _int_literal(self._arg(ins, 2, "period", "0"))
                repeat = _int_literal(self._arg(ins, 3, "repeat", "1"))
                if wait is None or wait < 0 or period != 0 or repeat not in (0, 1):
                    return None
        copies, targets = {}, set()
        for (s, ch), dst in p.graph.transitions.items():
            if ch >= self.vmin:
                return None     # a line fed by a virtual channel would chain copies
            copies[ch] = [_int_literal(self._arg(ins, 0, "chn"))
                          for sec in self._sections_run(p, s, dst, ch)
                          for ins in sec.instructions]
            if len(copies[ch]) != len(set(copies[ch])):
                return None
            targets.update(copies[ch])
        return copies, targets

    def _line_tail(self, copies: list, by_chn: dict):
        """End of a file channel's block when lines copy it: see _find_lines."""
        e = self.e
        order = self._tie_order()
        rank = {f: i for i, f in enumerate(order)}
        leaf = {v: self.R + v - self.vmin for v in copies}
        copies = sorted(copies, key=lambda v: rank[leaf[v]])

        def queue(vs):
            for v in vs:
                e(f"_e_vt = _e_fzt{v}")
                self._vput_leaf(v - self.vmin)
        if self.may_interrupt:
            e("if INTERRUPT:")
            e.indent()
            queue(copies)
            self._interrupted()
            e.dedent()
        self._next_record(before_break=lambda: queue(copies), from_file=True)
        for k, v in enumerate(copies):
            f = leaf[v]
            conds = [f"_e_fzt{v} != INF", f"{self._lt(f)} == INF"]
            for u in range(self.n):
                if u != f:
                    conds.append(f"{self._lt(u)} {'>=' if rank[f] < rank[u] else '>'} _e_fzt{v}")
            conds += [f"_e_fzt{w} >= _e_fzt{v}" for w in copies[k + 1:]]
            e(f"if {' and '.join(conds)}:")
            e.indent()
            e(f"AbsTime_ps = _e_fzt{v}")
            self._high_water()
            e(f"chn = {v}")
            if self.uses_fileid:
                e(f"fileid = {f}")
            for gi in by_chn.get(v, []):
                self._dispatch_vi(gi, v)
            if self.may_interrupt:
                e("if INTERRUPT:")
                e.indent()
                queue(copies[k + 1:])
                self._interrupted(from_file=False)
                e.dedent()
            e("pass")
            e.dedent()
            e("else:")
            e.indent()
            queue(copies[k:])
            e("continue")
            e.dedent()
        e("continue")

    # --- sections -------------------------------------------------------------------------------
    def _beforeloop(self):
        for p in self.parsed:
            sec = p.sections[0]
            if sec.triggers:
                continue
            for ins in sec.instructions:
                self._action(p, ins, triggered=False)

    def _listeners(self) -> dict:
        """Channel -> the VIs with a transition on it, in table order (their dispatch order)."""
        by_chn: dict[int, list] = {}
        for gi, p in enumerate(self.parsed):
            for (_, ch) in p.graph.transitions:
                by_chn.setdefault(ch, [])
                if gi not in by_chn[ch]:
                    by_chn[ch].append(gi)
        return by_chn

    def _dispatch(self):
        e = self.e
        by_chn = self._listeners()
        self._check_untriggered()
        # generate each channel's block once; channels whose blocks are identical share one
        # branch (a transition drawn on 16 channels is compiled once, not 16 times)
        blocks: dict[str, list] = {}
        for ch in sorted(by_chn):
            sub = _Emitter()
            outer, self.e = self.e, sub
            self._line_copies = []
            try:
                for gi in by_chn[ch]:
                    self._dispatch_vi(gi, ch)
                if self._line_copies:
                    self._line_tail(self._line_copies, by_chn)
            finally:
                self.e = outer
            key = sub.text()
            blocks.setdefault(key, [ch, sub, []])[2].append(ch)
        first = True
        for _, sub, chans in blocks.values():
            cond = " or ".join(f"chn == {c}" for c in chans)
            e(f"{'if' if first else 'elif'} {cond}:")
            first = False
            e.indent()
            for line, where in zip(sub.lines, sub.where):
                e(line, where)
            e("pass")
            e.dedent()

    def _dispatch_vi(self, gi: int, ch: int):
        """The code of VI gi for channel ch. When every state moves to the same state with the
        same code, the state test is left out (it is an unpredictable branch per event)."""
        e = self.e
        p = self.parsed[gi]
        blocks = sorted((s, dst) for (s, c), dst in p.graph.transitions.items() if c == ch)
        if self._state_free(gi, ch):
            s, dst = blocks[0]
            self._transition(gi, p, s, dst, ch)
            return
        for k, (s, dst) in enumerate(blocks):
            e(f"{'if' if k == 0 else 'elif'} now_{gi} == {s}:")
            e.indent()
            self._transition(gi, p, s, dst, ch)
            e("pass")
            e.dedent()

    def _state_free(self, gi: int, ch: int) -> bool:
        """Whether VI gi does the same on channel ch whatever its state: every state has the
        transition, to one target state, running the same code sections."""
        p = self.parsed[gi]
        moves = [(s, dst) for (s, c), dst in p.graph.transitions.items() if c == ch]
        if len(moves) != len(p.graph.states) or len({dst for _, dst in moves}) != 1:
            return False
        return len({tuple(map(id, self._sections_run(p, s, dst, ch))) for s, dst in moves}) == 1

    def _reads_state(self, gi: int) -> bool:
        """Whether VI gi ever tests its state; if not, its state is never stored either (a
        variable less in the event loop: registers are what the loop runs short of)."""
        if gi not in self._state_read:
            chans = {c for (_, c) in self.parsed[gi].graph.transitions}
            self._state_read[gi] = not all(self._state_free(gi, c) for c in chans)
        return self._state_read[gi]

    def _check_untriggered(self):
        import warnings
        for p in self.parsed:
            drawn = {(p.graph.states[s], p.graph.states[d], c)
                     for (s, c), d in p.graph.transitions.items()}
            for sec in p.sections:
                for t in sec.triggers:
                    if t.kind == "trans":
                        for c in t.channels:
                            if (t.src, t.state, c) not in drawn:
                                warnings.warn(f"VI {p.name!r} line {sec.line}: code for "
                                              f"{t.src}--{c}-->{t.state} never runs: that "
                                              "transition is not drawn on the diagram",
                                              stacklevel=2)

    def _transition(self, gi, p: ParsedVI, s, dst, ch):
        e = self.e
        exits, enters = self._sections_run(p, s, dst, ch, split=True)
        for sec in exits:
            for ins in sec.instructions:
                self._action(p, ins, triggered=True)
        # (ETA also keeps the previous state, last_g; nothing can read it, so it is not kept)
        if self._reads_state(gi):
            e(f"now_{gi} = {dst}")
        for sec in enters:
            for ins in sec.instructions:
                self._action(p, ins, triggered=True)

    @staticmethod
    def _sections_run(p: ParsedVI, s, dst, ch, split=False):
        """The code sections that run, in order, when VI p moves from state s to dst on ch
        (spec 3.8): exit code, then transition code and entry code."""
        sname, dname = p.graph.states[s], p.graph.states[dst]

        def matching(match):
            return [sec for sec in p.sections if any(match(t) for t in sec.triggers)]
        exits = matching(lambda t: t.kind == "exit_on" and t.src == sname and ch in t.channels)
        enters = (matching(lambda t: t.kind == "trans" and t.src == sname and t.state == dname
                           and ch in t.channels)
                  + matching(lambda t: t.kind == "entry" and t.state == dname)
                  + matching(lambda t: t.kind == "entry_on" and t.state == dname
                             and ch in t.channels))
        return (exits, enters) if split else exits + enters

    # --- actions --------------------------------------------------------------------------------
    def _action(self, p: ParsedVI, ins: Instruction, triggered: bool):
        e = self.e
        where = (p.name, ins.line)
        e.current = where
        try:
            self._action_code(p, ins, triggered, where)
        finally:
            e.current = None

    def _action_code(self, p: ParsedVI, ins: Instruction, triggered: bool, where):
        e = self.e
        n = ins.name
        if ins.obj is None:
            if n in ("RFILE", "VFILE", "INTEGER", "TABLE", "CLOCK", "HISTOGRAM"):
                return
            if n == "COINCIDENCE":
                self._coinc_reset(self._arg(ins, 0, "name"), p, ins)
                return
            if n == "EMIT_CODE":
                import textwrap
                raw = textwrap.dedent(ins.code)
                lead = len(raw) - len(raw.lstrip("\n"))
                code = raw.strip("\n")
                for k, line in enumerate(code.split("\n")):
                    e(line, (p.name, ins.line + raw[:lead].count("\n") + k))
                return
            if n == "ASSIGN":
                tgt = ins.target.split("[")[0].strip()
                if tgt not in self.symbols and tgt not in ("INTERRUPT",):
                    raise self.err(f"cannot assign to {tgt!r}: declare it first, e.g. "
                                   f"INTEGER({tgt})", p.name, ins)
                e(f"{ins.target} = {ins.code}", where)
                return
            if n == "emit":
                self._emit(p, ins)
                return
            if n == "cancel_emit":
                ch = self._arg(ins, 0, "chn")
                self._vput(p, ins, ch, "INF")
                return
            if n == "interrupt":
                if triggered:
                    e("INTERRUPT = 1", where)
                return
            if n == "abort":
                if triggered:
                    e("AbsTime_ps = INF", where)
                    e("INTERRUPT = 1", where)
                return
            if n == "sort":
                self._sort(p, ins, ins.args[0].strip("'\""), ins.args[1:])
                return
            raise self.err(f"unknown instruction {n!r}: expected a tool declaration (RFILE, "
                           "VFILE, INTEGER, TABLE, CLOCK, HISTOGRAM, COINCIDENCE), emit, "
                           "cancel_emit, interrupt, abort, or obj.action()", p.name, ins)
        # obj.action(...)
        objs = self._objects(ins.obj)
        if n == "sort":
            self._sort(p, ins, (ins.args[0] if ins.args else "'start'").strip("'\""), objs)
            return
        if n == "infer_start_from_stop":
            self._infer(p, ins, objs)
            return
        for base, prefix in objs:
            sym = self.symbols.get(base)
            if sym is None:
                raise self.err(f"{base!r} is not declared (declare it with a tool such as "
                               f"CLOCK({base}) or HISTOGRAM({base}, (bins, width)))", p.name, ins)
            handler = getattr(self, f"_{sym.kind.lower()}_{n}", None)
            if handler is None:
                raise self.err(f"{sym.kind} {base!r} has no action {n!r}", p.name, ins)
            if prefix and sym.kind != "HISTOGRAM":
                raise self.err(f"{base!r} is a {sym.kind}: only a HISTOGRAM with extra dimensions "
                               "takes an index like h[x].record(c)", p.name, ins)
            handler(p, ins, sym, self._prefix(p, ins, sym, prefix) if prefix else "")

    def _objects(self, text: str):
        """``c``, ``(c1,c2)``, ``[c1,c2]``, ``h[x][y]`` -> [(base name, index prefix text)]."""
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            return [(text, [])]
        if isinstance(node, (ast.Tuple, ast.List)):
            return [self._objects(ast.unparse(x))[0] for x in node.elts]
        prefix = []
        while isinstance(node, ast.Subscript):
            prefix.insert(0, ast.unparse(node.slice))
            node = node.value
        return [(ast.unparse(node), prefix)]

    def _value(self, p, ins, text, what):
        """A literal or an INTEGER name (or any expression of the group's names)."""
        return text

    # CLOCK ---------------------------------------------------------------------------------------
    def _clock_side(self, p, ins, sym, side, value):
        e = self.e
        where = (p.name, ins.line)
        c = sym.name
        if sym.info[f"max_{side}"] > 1:
            e(f"{c}_{side}_head, {c}_{side}_tail = _rt.ring_append({c}_{side}_tab, {c}_{side}_head,"
              f" {c}_{side}_tail, {value})", where)
        else:
            e(f"{c}_{side}_rec = {value}", where)

    def _clock_value(self, p, ins, sym, side):
        if not ins.args:
            return "AbsTime_ps"
        a = ins.args[0]
        if a in ("LAST_SYNC", "SYNCS"):
            self._note_sync(p, ins)
        if a == "LAST_SYNC":
            return "_rt.last_sync(AbsTime_ps, SYNCRate_pspr, _e_sync_exact, _e_exact)"
        if a == "SYNCS":
            if side != "start" or sym.info["max_start"] <= 1:
                raise self.err("start(SYNCS) needs a clock with several starts, e.g. "
                               f"CLOCK({sym.name}, 100, 1)", p.name, ins)
            return "SYNCS"
        return f"({a})"

    def _clock_start(self, p, ins, sym, prefix):
        value = self._clock_value(p, ins, sym, "start")
        if value == "SYNCS":
            c = sym.name
            self.e(f"{c}_start_head, {c}_start_tail = _rt.fill_syncs({c}_start_tab, AbsTime_ps, "
                   "SYNCRate_pspr, _e_sync_exact, _e_exact)")
            return
        self._clock_side(p, ins, sym, "start", value)

    def _clock_stop(self, p, ins, sym, prefix):
        self._clock_side(p, ins, sym, "stop", self._clock_value(p, ins, sym, "stop"))

    def _clock_clear(self, p, ins, sym, prefix):
        e = self.e
        for side in ("start", "stop"):
            if sym.info[f"max_{side}"] > 1:
                e(f"{sym.name}_{side}_head = {sym.name}_{side}_tail")
            e(f"{sym.name}_{side}_rec = 0")

    def _infer(self, p, ins, objs):
        e = self.e
        if not ins.args or ins.args[0] != "SYNC":
            raise self.err("infer_start_from_stop takes the word SYNC", p.name, ins)
        names = [b for b, _ in objs]
        self._note_sync(p, ins)
        for b in names:
            if b not in self.symbols or self.symbols[b].kind != "CLOCK":
                raise self.err(f"{b!r} is not a CLOCK", p.name, ins)
        e("common_start = " + (f"min({', '.join(n + '_stop_rec' for n in names)})"
                               if len(names) > 1 else f"{names[0]}_stop_rec"))
        e("common_start = _rt.last_sync(common_start, SYNCRate_pspr, _e_sync_exact, _e_exact)")
        for b in names:
            self._clock_side(p, ins, self.symbols[b], "start", "common_start")

    def _sort(self, p, ins, side, names):
        e = self.e
        if side not in ("start", "stop"):
            raise self.err("sort takes 'start' or 'stop'", p.name, ins)
        names = [n if isinstance(n, str) else n[0] for n in names]
        names = [n.strip() for n in names]
        vals = [f"{n}_{side}_rec" for n in names]
        e(f"_e_srt = sorted([{', '.join(vals)}])")
        for i, v in enumerate(vals):
            e(f"{v} = _e_srt[{i}]")

    # HISTOGRAM -----------------------------------------------------------------------------------
    def _prefix(self, p, ins, sym, parts: list) -> str:
        """Index text of an image histogram's extra dimensions, range-checked at run time (ETA
        writes out of bounds silently)."""
        extra = sym.info["extra"]
        if len(parts) > len(extra):
            raise self.err(f"{sym.name} has {len(extra)} extra dimensions, indexed with "
                           f"{len(parts)}", p.name, ins)
        names = []
        for k, part in enumerate(parts):
            self.e(f"_e_p{k} = {part}")
            self.e(f"if _e_p{k} < 0 or _e_p{k} >= {extra[k]}:")
            self.e(f"    raise IndexError('{sym.name}: index out of range 0..{extra[k] - 1}')")
            names.append(f"_e_p{k}")
        return ", ".join(names)

    @staticmethod
    def _mod(modifier, var):
        return f"({modifier.replace('time', f'({var})')})" if modifier else f"({var})"

    def _histogram_clear(self, p, ins, sym, prefix):
        self.e(f"{sym.name}[:] = 0")

    def _histogram_record(self, p, ins, sym, prefix):
        clocks = [self._objects(a)[0][0] for a in ins.args]
        for c in clocks:
            if self.symbols.get(c) is None or self.symbols[c].kind != "CLOCK":
                raise self.err(f"record() takes CLOCKs; {c!r} is not one", p.name, ins)
        dims = sym.info["dims"]
        if len(dims) == 1 and len(clocks) == 1:
            ci = self.symbols[clocks[0]].info
            if ci["max_start"] > 1 or ci["max_stop"] > 1:
                return self._histogram_record_all(p, ins, sym, prefix)
        if len(clocks) < len(dims):
            raise self.err(f"{sym.name} has {len(dims)} dimensions but record() got "
                           f"{len(clocks)} clocks", p.name, ins)
        e = self.e
        conds, idxs = [], []
        for k, (bins, width, mod) in enumerate(dims):
            c = clocks[k]
            e(f"_e_i{k} = {self._mod(mod, f'{c}_stop_rec - {c}_start_rec')} // {width}")
            conds.append(f"0 <= _e_i{k} < {bins}")
            idxs.append(f"_e_i{k}")
        index = ", ".join(([prefix] if prefix else []) + idxs)
        e(f"if {' and '.join(conds)}:")
        e(f"    {sym.name}[{index}] += 1")

    def _histogram_record_all(self, p, ins, sym, prefix):
        e = self.e
        if len(sym.info["dims"]) != 1:
            raise self.err("record_all works on 1-D histograms only", p.name, ins)
        bins, width, mod = sym.info["dims"][0]
        c = self._objects(ins.args[0])[0][0] if ins.args else None
        csym = self.symbols.get(c)
        if csym is None or csym.kind != "CLOCK":
            raise self.err(f"record_all takes one CLOCK; {c!r} is not one", p.name, ins)
        multi_start = csym.info["max_start"] > 1
        if not multi_start and csym.info["max_stop"] <= 1:
            raise self.err(f"CLOCK {c!r} keeps one start and one stop: use record() instead",
                           p.name, ins)
        side = "start" if multi_start else "stop"
        tab, head, tail = f"{c}_{side}_tab", f"{c}_{side}_head", f"{c}_{side}_tail"
        if not mod and (not prefix or prefix.count("_e_p") == len(sym.info["extra"])):
            # one call (into the image row a full prefix selects): the loops written out at
            # every record_all made programs slow to compile. A time modifier is recipe code,
            # so that case keeps the loops below.
            ref = f"{c}_stop_rec" if multi_start else f"{c}_start_rec"
            target = f"{sym.name}[{prefix}]" if prefix else sym.name
            e(f"_rt.record_all({target}, {tab}, {head}, {tail}, {ref}, {width}, "
              f"{multi_start}, _e_exact)")
            return
        h = f"{sym.name}[{prefix + ', ' if prefix else ''}_e_idx]"
        if multi_start:
            d = f"{c}_stop_rec - {tab}[_e_k]"
            stop_cond, count_cond = f"_e_idx >= {bins}", "_e_idx >= 0"
        else:
            d = f"{tab}[_e_k] - {c}_start_rec"
            stop_cond, count_cond = "_e_idx < 0", f"_e_idx < {bins}"
        body = [f"_e_idx = {self._mod(mod, d)} // {width}",
                f"if {stop_cond}:", "    break",
                f"if {count_cond}:", f"    {h} += 1"]
        if self.exact:
            # every stored value, newest first: head-1 down to tail, across the wrap
            e(f"_e_k = {head}")
            e(f"while _e_k != {tail}:")
            e.indent()
            e("_e_k -= 1")
            e("if _e_k < 0:")
            e(f"    _e_k = {tab}.shape[0] - 1")
            for b in body:
                e(b)
            e.dedent()
        else:
            # ETA's iteration: newest to oldest, and slot 0 skipped when the ring is wrapped
            e(f"if {tail} < {head}:")
            e.indent()
            e(f"for _e_k in range({head} - 1, {tail} - 1, -1):")
            e.indent()
            for b in body:
                e(b)
            e.dedent()
            e.dedent()
            e(f"elif {tail} > {head}:")
            e.indent()
            e(f"for _e_k in range({head} - 1, 0, -1):")
            e.indent()
            for b in body:
                e(b)
            e.dedent()
            e(f"for _e_k in range({tab}.shape[0] - 1, {tail} - 1, -1):")
            e.indent()
            for b in body:
                e(b)
            e.dedent()
            e.dedent()

    # COINCIDENCE ---------------------------------------------------------------------------------
    def _coinc_reset(self, name, p, ins):
        sym = self.symbols[name]
        thr = sym.info["threshold"]
        self.e(f"{name}[:] = AbsTime_ps - {thr} - 1")
        self.e(f"{sym.info['flag']} = 0")

    def _coincidence_reset(self, p, ins, sym, prefix):
        self._coinc_reset(sym.name, p, ins)

    def _coincidence_clear(self, p, ins, sym, prefix):
        if not ins.args:
            raise self.err("COINCIDENCE clear(k) needs a slot number", p.name, ins)
        k = ins.args[0]
        lit = _int_literal(k)
        if lit is not None and not 0 <= lit < sym.info["slots"]:
            raise self.err(f"slot {lit} out of range 0..{sym.info['slots'] - 1}", p.name, ins)
        self.e(f"{sym.name}[{k}] = AbsTime_ps - {sym.info['threshold']} - 1")
        self.e(f"{sym.info['flag']} = 0")

    def _coincidence_fill(self, p, ins, sym, prefix):
        if not ins.args:
            raise self.err("COINCIDENCE fill(k) needs a slot number", p.name, ins)
        k = ins.args[0]
        e = self.e
        e(f"{sym.name}[{k}] = AbsTime_ps")
        e(f"{sym.info['flag']} = 1")
        e(f"for _e_k in range({sym.info['slots']}):")
        e(f"    if AbsTime_ps - {sym.name}[_e_k] > {sym.info['threshold']}:")
        e(f"        {sym.info['flag']} = 0")

    # emit -----------------------------------------------------------------------------------------
    def _note_sync(self, p, ins):
        lines = p.source.split("\n")
        self.sync_uses.append((p.name, ins.line, ins.col,
                               lines[ins.line - 1] if 0 < ins.line <= len(lines) else None))

    def _local_scalars(self):
        """Scalars held in local variables inside mainloop (leaves only when there are few)."""
        for name, v in self.scalars.items():
            if not self.leaf_locals and name.startswith(("_e_lt", "_e_lc")):
                continue
            yield name, v

    def _leaf_chn(self, f: int) -> str:
        """The channel of leaf f's head event: a virtual channel's is a constant (one register
        less in the loop), a file's is read with its event."""
        return str(self.vmin + f - self.R) if f >= self.R else f"_e_lc{f}"

    def _lt(self, f: int) -> str:
        return f"_e_lt{f}" if self.leaf_locals else f"S[{self.LTB + f}]"

    def _lc(self, f: int) -> str:
        return f"_e_lc{f}" if self.leaf_locals else f"S[{self.LCB + f}]"

    def _tie_order(self) -> list:
        """Source ids by tie priority, first wins: ETA's tree lets the leaf at heap index
        i = n + f with the largest key (i+1) << (D - d(i)) win (spec 4.2)."""
        n = self.n
        if n == 0:
            return []
        D = (2 * n - 1 + 1).bit_length() - 1

        def key(f):
            i = n + f
            return (i + 1) << (D - ((i + 1).bit_length() - 1))
        return sorted(range(n), key=key, reverse=True)

    def _vput(self, p, ins, ch_text, time_text):
        e = self.e
        lit = _int_literal(ch_text)
        if lit is not None:
            if lit not in self.vfiles:
                raise self.err(f"channel {lit} is not a virtual channel", p.name, ins)
            e(f"_e_vt = {time_text}")
            self._vput_leaf(lit - self.vmin)
            return
        if not self.V:
            raise self.err(f"emit to channel {ch_text!r}: no virtual channel is declared "
                           "(declare them with VFILE(chn))", p.name, ins)
        e(f"_e_vt = {time_text}")
        e(f"_e_vch = {ch_text}")
        if not self.leaf_locals:
            e(f"if _e_vch < {self.vmin} or _e_vch > {self.vmin + self.V - 1}:")
            e("    raise RuntimeError('emit into a channel that is not a declared virtual channel')")
            self._vput_leaf(f"_e_vch - {self.vmin}")
            return
        first = True
        for ch in sorted(self.vfiles):
            e(f"{'if' if first else 'elif'} _e_vch == {ch}:")
            first = False
            e.indent()
            self._vput_leaf(ch - self.vmin)
            e.dedent()
        e("else:")
        e("    raise RuntimeError('emit into a channel that is not a declared virtual channel')")

    def _vput_leaf(self, v):
        """Put the time ``_e_vt`` into virtual channel slot v, a number or an expression
        (spec 4.3; exact mode keeps each channel in time order)."""
        e = self.e
        if isinstance(v, int):
            lt = self._lt(self.R + v)
            label = f"{self.vmin + v}"
        else:
            lt = f"S[{self.LTB + self.R} + ({v})]"
            label = "' + str(_e_vch) + '"
        # the common case inline: an idle channel takes the event as its head
        e(f"if {lt} == INF and _e_vt != INF:")
        e(f"    {lt} = _e_vt")
        e("else:")
        e(f"    {lt}, _e_ok = _rt.vput(VQ, VQI, {v}, {lt}, _e_vt, _e_exact)")
        e("    if not _e_ok:")
        e(f"        raise RuntimeError('virtual channel {label}: queue full; declare a larger "
          f"VFILE(chn, size)')")

    def _emit(self, p, ins):
        ch = self._arg(ins, 0, "chn")
        wait = self._arg(ins, 1, "waittime", "0")
        period = self._arg(ins, 2, "period", "0")
        repeat = self._arg(ins, 3, "repeat", "1")
        wl = _int_literal(wait)
        if wl is not None and wl < 0:
            raise self.err("emit waittime must not be negative", p.name, ins)
        rl = _int_literal(repeat)
        if id(ins) in self.line_ins:
            v = _int_literal(ch)
            self.e(f"_e_fzt{v} = AbsTime_ps + ({wait})")
            self._line_copies.append(v)
            return
        if rl is not None and rl <= 1:
            self._vput(p, ins, ch, f"AbsTime_ps + ({wait})")
        else:
            self.e(f"for _e_r in range({repeat}):")
            self.e.indent()
            self._vput(p, ins, ch, f"AbsTime_ps + ({wait}) + ({period}) * _e_r")
            self.e.dedent()


def compile_group_source(group: str, vis: list, params: dict, mode: str = "exact") -> GroupProgram:
    """Generate the program of ``group`` from ``vis`` = [(VI name, graph dict)] in table order."""
    return GroupCompiler(group, vis, params, mode).generate()
