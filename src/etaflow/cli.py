"""Command line: ``etaflow info | formats | simulate | run | recipes | serve``."""

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


def _cmd_run(args) -> int:
    from .panel import Backend, PanelError
    params = {}
    for item in args.set or []:
        if "=" not in item:
            print(f"etaflow: error: --set takes name=value, got {item!r}", file=sys.stderr)
            return 2
        k, v = item.split("=", 1)
        params[k] = v
    progress = _Progress() if sys.stderr.isatty() and not args.quiet else None

    def on_message(m):
        op, msg = m.get("op"), m.get("msg", "")
        if op == "progress" and progress:
            progress.update(m)
            return
        if progress:
            progress.close()
        if op in ("log", "display", "dash") or (op not in ("err", "running", "paused",
                                                             "finished", "discard", "progress")):
            if msg or op in ("dash",):
                print(msg or m.get("url-dash", ""), flush=True)
        elif op == "err":
            print(f"error: {msg}" if not msg.startswith("error") else msg, file=sys.stderr,
                  flush=True)
    recipe = _recipe_path(args.recipe)
    backend = Backend(on_message, mode=args.mode, output_dir=args.output,
                      serve_displays=args.serve)
    try:
        backend.run_panel(recipe, args.panel, group=args.group, params=params)
    except (PanelError, KeyError) as e:
        print(f"etaflow: error: {e}", file=sys.stderr)
        return 1
    finally:
        if progress:
            progress.close()
    if args.serve and backend.serving():
        print("serving the displays above until their /shutdown page is opened; Ctrl-C to "
              "stop", flush=True)
        try:
            backend.wait_displays()
        except KeyboardInterrupt:
            pass
    return 0


class _Progress:
    """A one-line progress indicator on stderr for long runs."""

    def __init__(self):
        self.last = ""

    def update(self, m):
        pct = float(m.get("percent", 0))
        bar = "#" * int(pct / 5) + "." * (20 - int(pct / 5))
        text = f"\r[{bar}] {pct:5.1f}%"
        if text != self.last:
            sys.stderr.write(text)
            sys.stderr.flush()
            self.last = text

    def close(self):
        if self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.last = ""


def _recipes_dir() -> str:
    import os
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")


def _recipe_path(name: str) -> str:
    import os
    if os.path.exists(name):
        return name
    candidate = os.path.join(_recipes_dir(), name if name.endswith(".eta") else name + ".eta")
    return candidate if os.path.exists(candidate) else name


def _cmd_recipes(args) -> int:
    import os
    from .recipe import Recipe
    folder = _recipes_dir()
    names = sorted(f for f in os.listdir(folder) if f.endswith(".eta")) if os.path.isdir(folder) \
        else []
    for f in names:
        r = Recipe(os.path.join(folder, f))
        panels = ", ".join(e.name for e in r.panels())
        print(f"{f[:-4]:28} groups {', '.join(r.groups()):20} panels: {panels}")
    if not names:
        print("no bundled recipes")
    return 0


def _cmd_serve(args) -> int:
    from .server import serve
    return serve(host=args.host, port=args.port, token=args.token, mode=args.mode)


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
    r = sub.add_parser("run", help="run a recipe's Script Panel headless")
    r.add_argument("recipe", help="a .eta file, or the name of a bundled recipe")
    r.add_argument("--panel", required=True, help="Script Panel name")
    r.add_argument("--group", help="group (default: the panel's first group)")
    r.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="set a recipe parameter (repeatable), e.g. --set file=run.ptu")
    r.add_argument("--mode", choices=("exact", "eta"), default="exact",
                   help="exact results (default) or ETA 0.9.9's numbers")
    r.add_argument("--output", help="folder for displayed figures (default: a temp folder)")
    r.add_argument("--serve", action="store_true", help="serve Dash/Bokeh apps and wait")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.set_defaults(func=_cmd_run)
    rc = sub.add_parser("recipes", help="list the bundled recipes")
    rc.set_defaults(func=_cmd_recipes)
    sv = sub.add_parser("serve", help="run the backend server for ETA's GUI and etaflow's")
    sv.add_argument("--host", default=None, help="default $ETA_IP or 127.0.0.1")
    sv.add_argument("--port", type=int, default=None, help="default $ETA_PORT or 5678")
    sv.add_argument("--token", default=None,
                    help="access token (required to listen beyond loopback; or $ETAFLOW_TOKEN)")
    sv.add_argument("--mode", choices=("exact", "eta"), default="exact",
                    help="exact results (default) or ETA 0.9.9's numbers")
    sv.set_defaults(func=_cmd_serve)
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
