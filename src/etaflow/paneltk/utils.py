"""Helpers for Script Panels: the header text written on top of exported data files.

``info(globals_dict, recipe_type)`` gives the same text as ETA's ``etabackend.tk.utils.info``,
so exported ``.txt`` files look the same whichever analyser wrote them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["info"]

_MISSING = "not available"

# recipe type (lower case) -> (label, parameter name, value when the parameter is absent);
# None: the type adds no line. Types not listed add nothing either.
_EXTRA_LINE = {
    "correlation": ("mode", "HH400_mode", "quTAG"),
    "lifetime": ("mode", "ch_sel", _MISSING),
    "simulation": ("syncs", "syncs", _MISSING),
    "countrate": None,
}


def info(globals_dict, recipe_type=None) -> str:
    """Header for an exported data file, built from a panel's parameters.

    ``globals_dict`` is any mapping of parameter names to values: a panel's ``globals()`` or
    ``eta.compilecache_vars[group]``. It reads ``file``, ``binsize`` and ``bins``; a
    ``recipe_type`` of ``correlation``, ``lifetime`` or ``simulation`` (any case) adds the
    measurement mode (``HH400_mode`` or ``ch_sel``) or the number of ``syncs``. Every line ends
    with a newline; ``numpy.savetxt(header=...)`` prefixes each with ``# ``.
    """
    params = globals_dict if globals_dict is not None else {}
    lines = [
        "Created with ETA - https://timetag.github.io",
        f"filename: {Path(params.get('file', _MISSING)).name}",
        f"binsize: {params.get('binsize', _MISSING)}",
        f"bins: {params.get('bins', _MISSING)}",
    ]
    if recipe_type:
        extra = _EXTRA_LINE.get(str(recipe_type).lower())
        if extra is not None:
            label, key, default = extra
            lines.append(f"{label}: {params.get(key, default)}")
    return "".join(line + "\n" for line in lines)
