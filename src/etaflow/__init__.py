"""etaflow: fast, exact time-tag analysis; runs ETA recipes."""

from .clip import (Clip, clip_buffer, clip_file, clips, clips_list, decode_clip, iter_events,
                   read_events, split_file)
from .errors import EtaflowError, FormatError, FormatWarning, RecipeError, RunError
from .formats import *  # noqa: F401,F403  (FORMAT_* constants, open_source)
from .formats import __all__ as _formats_all

__version__ = "0.1.0"

_LAZY = {"ETA": ("etaflow.eta", "ETA"), "Recipe": ("etaflow.recipe", "Recipe"),
         "Task": ("etaflow.engine.task", "Task"), "Backend": ("etaflow.panel", "Backend"),
         "file_info": ("etaflow.info", "file_info")}


def __getattr__(name):
    """The engine, recipes and panel runtime load on first use (keeps ``import etaflow`` light)."""
    if name in _LAZY:
        import importlib
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'etaflow' has no attribute {name!r}")


__all__ = ["ETA", "Recipe", "Task", "Backend", "file_info", "Clip", "clip_file", "clips", "clips_list", "split_file", "clip_buffer", "decode_clip",
           "iter_events", "read_events", "EtaflowError", "FormatError", "FormatWarning",
           "RecipeError", "RunError", *_formats_all]
