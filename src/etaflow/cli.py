"""Command line: ``etaflow info FILE``, ``etaflow simulate``, ``etaflow formats``."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import EtaflowError

__all__ = ["main"]


def _fmt_ps(ps) -> str:
    if ps is None:
        return "-"
    for unit, scale in (("s", 1e12), ("ms", 1e9), ("us", 1e6), ("ns", 1e3)):
        if abs(ps) >= scale:
            return f"{ps / scale:.6g} {unit}"
    return f"{ps:.6g} ps"


def _print_info(d: dict) -> None:
    print(f"file            {d['file']}")
    print(f"format          {d['format']} (code {d['format_code']})  device {d['device'] or '-'}"
          f"  mode {d['mode'] or '-'}")
    print(f"records         {d['records']:,}" + (f"  (header says {d['header_records']:,})"
                                                   if d['header_records'] is not None else ""))
    print(f"events          {d['events']:,}  (markers {d['markers']:,}, overflow records "
          f"{d['overflow_records']:,})")
    for ch, n in d["channels"].items():
        print(f"  channel {ch:>4}  {n:,}")
    for ch, n in d["marker_channels"].items():
        print(f"  marker  {ch:>4}  {n:,}")
    print(f"resolution      {_fmt_ps(d['resolution_ps'])}"
          + (f"  sync period {_fmt_ps(d['sync_period_ps'])}" if d["sync_period_ps"] else ""))
    print(f"first .. last   {_fmt_ps(d['first_ps'])} .. {_fmt_ps(d['last_ps'])}"
          f"  duration {_fmt_ps(d['duration_ps'])}")
    print(f"data loss       {d['data_loss'] or 'none reported'}")
    for w in d["warnings"]:
        print(f"warning         {w}")


def _cmd_info(args) -> int:
    from .info import file_info
    d = file_info(args.file, args.format)
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    else:
        _print_info(d)
    return 0


def _cmd_formats(args) -> int:
    from .formats.registry import formats
    for code, e in sorted(formats().items()):
        print(f"{code:>3}  {e.name:<32} {' '.join(e.extensions)}"
              + ("" if e.sniff else "  (headerless: pass --format)"))
    return 0


def _cmd_simulate(args) -> int:
    from .sim import simulate_file
    path = simulate_file(args.out, kind=args.kind, duration_s=args.duration, seed=args.seed)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="etaflow", description=__doc__)
    p.add_argument("--version", action="version", version=f"etaflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("info", help="describe a time-tag file")
    i.add_argument("file")
    i.add_argument("--format", type=int, default=-1, help="FORMAT_* code (default: detect)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=_cmd_info)
    f = sub.add_parser("formats", help="list readable formats")
    f.set_defaults(func=_cmd_formats)
    s = sub.add_parser("simulate", help="write a synthetic HBT time-tag file")
    s.add_argument("out")
    s.add_argument("--kind", default="hh-t2",
                   help="hh-t2, hh-t3, ph-t3, qutag (default hh-t2)")
    s.add_argument("--duration", type=float, default=1.0, help="seconds (default 1)")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=_cmd_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EtaflowError as e:
        print(f"etaflow: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"etaflow: error: {e}", file=sys.stderr)
        return 1
