"""etaflow: fast, exact time-tag analysis; runs ETA recipes."""

from .clip import (Clip, clip_buffer, clip_file, clips, clips_list, decode_clip, iter_events,
                   read_events, split_file)
from .errors import EtaflowError, FormatError, FormatWarning, RecipeError, RunError
from .formats import *  # noqa: F401,F403  (FORMAT_* constants, open_source)
from .formats import __all__ as _formats_all

__version__ = "0.1.0"

__all__ = ["Clip", "clip_file", "clips", "clips_list", "split_file", "clip_buffer", "decode_clip",
           "iter_events", "read_events", "EtaflowError", "FormatError", "FormatWarning",
           "RecipeError", "RunError", *_formats_all]
