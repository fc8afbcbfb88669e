"""The ``.eta`` recipe file: parameters, Script Panels (dpp) and Virtual Instruments (vi), in
groups (spec section 3.1-3.3). Loading and saving are lossless: keys and entry fields we do not
use are kept and written back as they were.
"""

from __future__ import annotations

import copy
import json
import os
import time

from .errors import RecipeError

__all__ = ["Recipe", "Entry"]


class Entry:
    """One row of the recipe's index table plus its content.

    ``kind`` is ``"vi"``, ``"dpp"`` (Script Panel) or ``"var"`` (parameter); ``groups`` the
    parsed group list (an empty group name means ``main``).
    """

    def __init__(self, row: dict, content):
        self.row = row                 # the table row as loaded (all fields kept)
        self.content = content         # VI: graph JSON string; panel: code; parameter: None
        rid = str(row.get("id", ""))
        if "vi_" in rid:
            self.kind = "vi"
        elif "dpp_" in rid:
            self.kind = "dpp"
        else:
            self.kind = "var"

    @property
    def id(self) -> str:
        return self.row.get("id", "")

    @property
    def name(self) -> str:
        return self.row.get("name", "")

    @property
    def config(self) -> str:
        return str(self.row.get("config", ""))

    @property
    def groups(self) -> list[str]:
        return [g.strip() or "main" for g in str(self.row.get("group", "")).split(",")]

    def graph(self) -> dict:
        """The VI's state diagram and code: ``{"nodes", "edges", "usercode"}``."""
        if self.kind != "vi":
            raise TypeError(f"{self.name!r} is not a Virtual Instrument")
        try:
            return json.loads(self.content) if isinstance(self.content, str) else self.content
        except json.JSONDecodeError as e:
            raise RecipeError(f"the diagram of VI {self.name!r} is not valid JSON: {e}",
                              vi=self.name) from None

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name!r} groups={self.groups}>"


class Recipe:
    """An ETA recipe. ``Recipe(path_or_obj)`` loads a ``.eta`` file, a JSON string or a parsed
    JSON object (as ETA's GUI sends it)."""

    def __init__(self, source=None):
        self.filename = None
        if source is None:
            obj = {"eta_index_table": "[]"}
        elif isinstance(source, dict):
            obj = copy.deepcopy(source)
        elif isinstance(source, (str, os.PathLike)) and not str(source).lstrip().startswith("{"):
            self.filename = os.fspath(source)
            with open(self.filename, encoding="utf-8") as f:
                obj = json.load(f)
        else:
            obj = json.loads(source)
        if "eta_index_table" not in obj:
            raise RecipeError("not an ETA recipe: the key 'eta_index_table' is missing "
                              f"({'an empty object' if not obj else 'keys: ' + ', '.join(obj)})")
        table = obj["eta_index_table"]
        rows = json.loads(table) if isinstance(table, str) else table
        self._extra = {k: v for k, v in obj.items() if k != "eta_index_table"}
        self.entries: list[Entry] = []
        for row in rows:
            rid = str(row.get("id", ""))
            key = rid
            e = Entry(dict(row), None)
            if e.kind == "var":
                # ETA rewrites parameter ids: "var" + the part from the first "_" on
                key = "var" + (rid[rid.find("_"):] if "_" in rid else rid)
                e.row["id"] = key
            e.content = obj.get(key, obj.get(rid))
            self.entries.append(e)

    # --- queries ------------------------------------------------------------------------------
    def vis(self, group: str | None = None) -> list[Entry]:
        return [e for e in self.entries if e.kind == "vi" and (group is None or group in e.groups)]

    def panels(self, group: str | None = None) -> list[Entry]:
        return [e for e in self.entries if e.kind == "dpp" and (group is None or group in e.groups)]

    def parameters(self, group: str | None = None) -> dict[str, str]:
        """name -> value (strings, as ETA hands them to Script Panels) for one group, or all."""
        return {e.name: e.config for e in self.entries
                if e.kind == "var" and (group is None or group in e.groups)}

    def groups(self) -> list[str]:
        """Groups that hold at least one VI, in first-appearance order."""
        out: list[str] = []
        for e in self.entries:
            if e.kind == "vi":
                for g in e.groups:
                    if g not in out:
                        out.append(g)
        return out

    def panel(self, name: str) -> Entry:
        for e in self.entries:
            if e.kind == "dpp" and e.name == name:
                return e
        raise KeyError(f"no Script Panel named {name!r}; panels: "
                       + ", ".join(repr(e.name) for e in self.panels()))

    # --- ETA's parameter API --------------------------------------------------------------------
    def get_parameter(self, name: str, group: str | None = None):
        for e in self.entries:
            if e.kind == "var" and e.name == name and (group is None or group in e.groups):
                return e.config
        return None

    def set_parameter(self, name: str, value=None, group: str | None = None) -> None:
        """Set (or create) a parameter; ``value`` is stored as a string, like the GUI does."""
        found = False
        for e in self.entries:
            if e.kind == "var" and e.name == name and (group is None or group in e.groups):
                e.row["config"] = "" if value is None else str(value)
                found = True
        if not found:
            rid = f"var_etaflow{int(time.time() * 1e6):x}{len(self.entries)}"
            self.entries.insert(0, Entry({"id": rid, "name": name, "group": group or "main",
                                          "info": "", "config": "" if value is None else str(value)},
                                         None))

    def del_parameter(self, name: str, group: str | None = None) -> None:
        self.entries = [e for e in self.entries
                        if not (e.kind == "var" and e.name == name and
                                (group is None or group in e.groups))]

    # --- saving ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        obj = dict(self._extra)
        rows = []
        for e in self.entries:
            rows.append(e.row)
            if e.content is not None:
                obj[e.id] = e.content
        obj["eta_index_table"] = json.dumps(rows)
        return obj

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.dumps())
