"""Turn generated program source into a cached, importable numba module.

The source is written to ``<cache>/g_<hash>.py``, the hash covering the source, etaflow's and
numba's versions; numba's ``cache=True`` then stores the machine code beside it, so a second
process running the same recipe group compiles nothing. The cache folder is
``$ETAFLOW_CACHE`` or ``~/.cache/etaflow``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

import numba

__all__ = ["load_program_module", "cache_dir"]

_loaded: dict[str, object] = {}


def cache_dir() -> str:
    d = os.environ.get("ETAFLOW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                        "etaflow")
    os.makedirs(d, exist_ok=True)
    return d


def _runtime_fingerprint() -> str:
    """numba's cache does not notice changes in functions a cached function calls, so the key
    covers the source of the runtime helpers the generated programs call."""
    global _RUNTIME_FP
    if _RUNTIME_FP is None:
        from ..engine import runtime
        from .. import _jit
        h = hashlib.sha256()
        for mod in (runtime, _jit):
            with open(mod.__file__, "rb") as f:
                h.update(f.read())
        _RUNTIME_FP = h.hexdigest()
    return _RUNTIME_FP


_RUNTIME_FP = None


def load_program_module(source: str):
    from .. import __version__
    key = hashlib.sha256(f"{source}\n{__version__}\n{numba.__version__}\n"
                         f"{_runtime_fingerprint()}".encode()).hexdigest()[:24]
    if key in _loaded:
        return _loaded[key]
    name = f"etaflow_g_{key}"
    path = os.path.join(cache_dir(), f"g_{key}.py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)          # atomic: parallel processes never see half a file
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    _loaded[key] = mod
    return mod
