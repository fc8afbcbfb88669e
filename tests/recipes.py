"""Build small recipes in tests: ``vi(name, code, states, transitions)`` and ``recipe(...)``."""

from __future__ import annotations

import json

from etaflow.formats.qutag import write_qutag_binary


def vi(name: str, code: str, states=("a",), edges=(), initial: str | None = None,
       group: str = "main"):
    """A VI: ``edges`` are (from state, to state, "c1,c2") tuples."""
    names = list(states)
    init = initial or names[0]
    nodes = [{"text": s, **({"initial": True} if s == init else {})} for s in names]
    es = [{"source": names.index(a), "target": names.index(b), "text": str(t)}
          for a, b, t in edges]
    return {"kind": "vi", "name": name, "group": group,
            "content": json.dumps({"nodes": nodes, "edges": es, "usercode": code})}


def rfile_vi(code: str = "RFILE(f,[0,1,2,3])", group: str = "main"):
    return {"kind": "vi", "name": "source", "group": group,
            "content": json.dumps({"nodes": [{"initial": True}], "edges": [], "usercode": code})}


def recipe(*entries, params: dict | None = None, group: str = "main") -> dict:
    rows, obj = [], {}
    for k, v in (params or {}).items():
        rid = f"var_p{len(rows)}"
        rows.append({"id": rid, "name": k, "group": group, "info": "", "config": str(v)})
    for i, e in enumerate(entries):
        rid = f"vi_t{i}"
        rows.append({"id": rid, "name": e["name"], "group": e["group"], "info": "", "config": ""})
        obj[rid] = e["content"]
    obj["eta_index_table"] = json.dumps(rows)
    return obj


def events_file(path, events) -> str:
    """A quTAG binary file of (time ps, channel) events, in the given order."""
    times = [t for t, _ in events]
    chans = [c for _, c in events]
    write_qutag_binary(path, times, chans)
    return str(path)
