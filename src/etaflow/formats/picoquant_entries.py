"""Registry entry for PicoQuant PTU (kept apart so picoquant.py has no registry import cycle)."""

from .picoquant import MAGIC, read_ptu_header
from .registry import FORMAT_PQ, FormatEntry

ENTRIES = [
    FormatEntry(code=FORMAT_PQ, name="PicoQuant PTU", open=read_ptu_header,
                sniff=lambda head, fn: head[:6] == MAGIC, extensions=(".ptu", ".timeres"),
                priority=10),
]
