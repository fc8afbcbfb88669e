"""Parse one VI: its state diagram and its code panel (spec section 3.1, 3.4).

Pipeline, as ETA does it (so every recipe parses the same way), but with positions kept:

1. embedded code ``{...}`` .. ``{{{{{...}}}}}`` is cut out (5 braces first) and replaced by
   ``EMIT_CODE(n)`` (followed by the newlines it spanned, so line numbers stay right);
2. the text is scanned line by line: a line with a ``:`` after column 0 whose comment-stripped
   text holds exactly one header match starts a new section; text before the first header is the
   ``beforeloop`` section;
3. each section is dedented and parsed with :mod:`ast`; calls become instructions, ``x = e`` and
   ``x += e`` assignments become ``ASSIGN``; keyword arguments are kept (ETA loses them).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import textwrap

from ..errors import RecipeError

__all__ = ["Instruction", "Section", "Trigger", "VIGraph", "ParsedVI", "parse_vi", "state_name"]

_STATE_CHARS = re.compile(r"[;:,.(){}\[\]+=\-!@#$%^&*~`?/\\| <>]")
_HEADER = re.compile(r"([A-Za-z0-9_ ,\-~>]+):")
_ITEM = re.compile(r"(?P<src>\w*)[-~]+(?P<chs>[0-9,]*?)[-~]*>(?P<dst>\w*)|(?P<state>\w+)")


def state_name(text, index: int) -> str:
    name = _STATE_CHARS.sub("_", text) if text else ""
    return name or f"#{index}"


@dataclasses.dataclass
class Instruction:
    """One action or declaration: ``obj.name(args)`` or ``name(args)``.

    ``args`` are source texts of positional arguments, ``kwargs`` name -> source text;
    ``obj`` the receiver's source text (``None`` for plain calls); ``line``/``col`` 1-based
    positions in the VI's code panel.
    """

    name: str
    obj: str | None
    args: list
    kwargs: dict
    line: int
    col: int
    code: str = ""          # EMIT_CODE: the embedded snippet; ASSIGN: the value expression
    target: str = ""        # ASSIGN: the assigned name


@dataclasses.dataclass
class Trigger:
    """Where a section's code runs: ``kind`` is 'entry' (into ``state``), 'trans' (``src`` ->
    ``state`` on ``channels``), 'entry_on' (into ``state`` on ``channels``) or 'exit_on' (out of
    ``src`` on ``channels``)."""

    kind: str
    state: str = ""
    src: str = ""
    channels: tuple = ()


@dataclasses.dataclass
class Section:
    triggers: list            # [] for beforeloop
    instructions: list
    line: int


@dataclasses.dataclass
class VIGraph:
    states: list              # state names, index = state id
    initial: int
    transitions: dict         # (state id, channel) -> state id


@dataclasses.dataclass
class ParsedVI:
    name: str
    graph: VIGraph
    sections: list
    source: str               # the substituted code panel text
    snippets: list            # embedded code texts, by EMIT_CODE index
    snippet_lines: list       # 1-based line of each snippet's opening brace


def parse_graph(vi_name: str, graph: dict) -> VIGraph:
    nodes = graph.get("nodes") or []
    states = [state_name(n.get("text"), i) for i, n in enumerate(nodes)]
    seen = set()
    for s in states:
        if s in seen:
            raise RecipeError(f"two states are named {s!r}; state names must be unique", vi=vi_name)
        seen.add(s)
    initial = None
    for i, n in enumerate(nodes):
        if "initial" in n:
            initial = i
    if initial is None:
        raise RecipeError("the state diagram has no initial state (mark one state as initial)",
                          vi=vi_name)
    transitions = {}
    for e in graph.get("edges") or []:
        if "text" not in e or str(e.get("text", "")).strip() == "":
            raise RecipeError(f"a transition from {states[e.get('source', 0)]!r} to "
                              f"{states[e.get('target', 0)]!r} has no channel condition", vi=vi_name)
        src, dst = int(e["source"]), int(e["target"])
        for part in str(e["text"]).split(","):
            try:
                ch = int(part)
            except ValueError:
                raise RecipeError(f"transition condition {e['text']!r} from {states[src]!r} is not "
                                  "a comma-separated list of channel numbers", vi=vi_name) from None
            if not 0 <= ch <= 254:
                raise RecipeError(f"channel {ch} on a transition from {states[src]!r} is out of "
                                  "range 0..254", vi=vi_name)
            if (src, ch) in transitions:
                raise RecipeError(f"ambiguous transition: state {states[src]!r} has two transitions "
                                  f"on channel {ch}", vi=vi_name)
            transitions[(src, ch)] = dst
    return VIGraph(states, initial, transitions)


def _extract_embedded(text: str):
    snippets: dict[int, tuple[str, int]] = {}
    counter = [0]
    for k in (5, 4, 3, 2, 1):
        pat = re.compile(r"\{" * k + r"(.*?)" + r"\}" * k, re.S)

        # positions shift as we substitute; record lines against the text at this stage
        out, last, pieces = [], 0, []
        for m in pat.finditer(text):
            pieces.append((m.start(), m.end(), m))
        for s, e, m in pieces:
            out.append(text[last:s])
            n = counter[0]
            counter[0] += 1
            line = text.count("\n", 0, s) + 1
            snippets[n] = (m.group(1), line)
            out.append(f"EMIT_CODE({n})" + "\n" * m.group(0).count("\n"))
            last = e
        out.append(text[last:])
        text = "".join(out)
    ordered = [snippets[i][0] for i in range(counter[0])]
    lines = [snippets[i][1] for i in range(counter[0])]
    return text, ordered, lines


def _parse_header(vi, header: str, states: list, lineno: int, line_text: str) -> list:
    items = header.replace(" ", "")
    triggers = []
    pos = 0
    while pos < len(items):
        m = _ITEM.match(items, pos)
        if not m or m.end() == pos:
            raise RecipeError(f"cannot read transition header {header!r}: expected 'state', "
                              "'a--1,2-->b', '--1-->b' or 'a--1-->'", vi=vi, line=lineno, column=1,
                              source_line=line_text)
        if m.group("state"):
            triggers.append(Trigger("entry", state=m.group("state")))
        else:
            chs = tuple(int(c) for c in m.group("chs").split(",") if c != "")
            if not chs:
                raise RecipeError(f"arrow {m.group(0)!r} has no channel list; write e.g. "
                                  f"'{m.group('src')}--1-->{m.group('dst')}'", vi=vi, line=lineno,
                                  column=1, source_line=line_text)
            src, dst = m.group("src"), m.group("dst")
            if src and dst:
                triggers.append(Trigger("trans", state=dst, src=src, channels=chs))
            elif dst:
                triggers.append(Trigger("entry_on", state=dst, channels=chs))
            elif src:
                triggers.append(Trigger("exit_on", src=src, channels=chs))
            else:
                raise RecipeError(f"arrow {m.group(0)!r} names no state", vi=vi, line=lineno,
                                  column=1, source_line=line_text)
        pos = m.end()
        if pos < len(items):
            if items[pos] != ",":
                raise RecipeError(f"unexpected {items[pos]!r} in transition header {header!r}",
                                  vi=vi, line=lineno, column=1, source_line=line_text)
            pos += 1
    for t in triggers:
        for s in (t.state, t.src):
            if s and s not in states:
                raise RecipeError(
                    f"state {s!r} is not on the state diagram (states: {', '.join(states)}); "
                    "draw it, or if this line is Python with a ':' put it inside { } embedded "
                    "code", vi=vi, line=lineno, column=max(line_text.find(s) + 1, 1),
                    source_line=line_text)
    return triggers


def _split_sections(vi, text: str, states: list):
    """[(triggers, [(lineno, line)...], header_line)] with beforeloop first."""
    sections = [([], [], 1)]
    for i, line in enumerate(text.split("\n"), start=1):
        if ":" in line and line.index(":") > 0:
            stripped = line.split("#", 1)[0]
            matches = _HEADER.findall(stripped)
            if len(matches) == 1 and matches[0].strip():
                head = matches[0]
                rest = stripped[stripped.index(head + ":") + len(head) + 1:]
                triggers = _parse_header(vi, head, states, i, line)
                if triggers:
                    sections.append((triggers, [(i, rest)], i))
                    continue
            sections[-1][1].append((i, stripped))
        else:
            sections[-1][1].append((i, line))
    return sections


def _section_instructions(vi, lines: list, source_lines: list) -> list:
    if not any(l.strip() for _, l in lines):
        return []
    first = lines[0][0]
    # the header's remainder may start mid-line: dedent the rest as a block
    body_lines = [l for _, l in lines]
    if body_lines and body_lines[0].strip() == "":
        body_lines[0] = ""
    body = textwrap.dedent("\n".join(body_lines))
    # a one-line body after the header plus an indented block: align the first line
    if body_lines[0].strip() and len(body_lines) > 1:
        rest = textwrap.dedent("\n".join(body_lines[1:]))
        body = body_lines[0].strip() + "\n" + rest
    try:
        tree = ast.parse(body)
    except SyntaxError as e:
        ln = first + (e.lineno or 1) - 1
        src = source_lines[ln - 1] if 0 < ln <= len(source_lines) else None
        raise RecipeError(f"syntax error: {e.msg}", vi=vi, line=ln,
                          column=_orig_col(src, body.split("\n")[(e.lineno or 1) - 1], e.offset),
                          source_line=src) from None
    out = []
    for node in tree.body:
        ln = first + node.lineno - 1
        src = source_lines[ln - 1] if 0 < ln <= len(source_lines) else ""
        col = _orig_col(src, body.split("\n")[node.lineno - 1], node.col_offset + 1)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            out.append(_call(vi, node.value, ln, col, src))
        elif isinstance(node, ast.Assign):
            if len(node.targets) != 1:
                raise RecipeError("chained assignment is not supported; assign one name",
                                  vi=vi, line=ln, column=col, source_line=src)
            out.append(Instruction("ASSIGN", None, [], {}, ln, col, ast.unparse(node.value),
                                   ast.unparse(node.targets[0])))
        elif isinstance(node, ast.AugAssign):
            ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}
            op = ops.get(type(node.op))
            if op is None:
                raise RecipeError("only +=, -= and *= are supported outside { } embedded code",
                                  vi=vi, line=ln, column=col, source_line=src)
            t = ast.unparse(node.target)
            out.append(Instruction("ASSIGN", None, [], {}, ln, col,
                                   f"{t} {op} ({ast.unparse(node.value)})", t))
        elif isinstance(node, ast.Pass):
            continue
        else:
            raise RecipeError("expected a tool declaration or action call, an assignment, or "
                              "Python inside { } embedded code", vi=vi, line=ln, column=col,
                              source_line=src)
    return out


def _orig_col(src: str | None, body_line: str, col) -> int:
    if not src or col is None:
        return col or 1
    stripped = body_line.strip()
    at = src.find(stripped) if stripped else -1
    lead = len(body_line) - len(body_line.lstrip())
    return (at - lead + col) if at >= 0 else col


def _call(vi, call: ast.Call, line: int, col: int, src: str) -> Instruction:
    args = [ast.unparse(a) for a in call.args]
    kwargs = {k.arg: ast.unparse(k.value) for k in call.keywords if k.arg}
    f = call.func
    if isinstance(f, ast.Attribute):
        return Instruction(f.attr, ast.unparse(f.value), args, kwargs, line, col)
    if isinstance(f, ast.Name):
        return Instruction(f.id, None, args, kwargs, line, col)
    raise RecipeError(f"cannot call {ast.unparse(f)!r}: expected a tool action like c.start()",
                      vi=vi, line=line, column=col, source_line=src)


def parse_vi(name: str, graph: dict, code: str) -> ParsedVI:
    """Parse a VI whose backtick parameters are already substituted."""
    g = parse_graph(name, graph)
    text, snippets, snippet_lines = _extract_embedded(code)
    source_lines = code.split("\n")
    sections = []
    for triggers, lines, head_line in _split_sections(name, text, g.states):
        instrs = _section_instructions(name, lines, source_lines)
        for ins in instrs:
            if ins.name == "EMIT_CODE":
                ins.code = snippets[int(ins.args[0])]
                ins.line = snippet_lines[int(ins.args[0])]
        sections.append(Section(triggers, instrs, head_line))
    return ParsedVI(name, g, sections, code, snippets, snippet_lines)
