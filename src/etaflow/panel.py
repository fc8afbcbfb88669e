"""Script Panel runtime: run a recipe's Python panels the way ETA's backend does (spec 5.3-5.4).

A panel's code runs with ``eta`` (an :class:`~etaflow.eta.ETA` whose ``send`` and ``display``
report to the caller) and the parameters of its group as globals (strings, as in ETA). Imports of
``etabackend``, ``etabackend.tk`` and ``etabackend.clip`` resolve to etaflow's equivalents inside
the panel only (no top-level ``etabackend`` package is installed). Messages logged to
``logging.getLogger('etabackend.frontend')`` (and etaflow's own ``etaflow.frontend``) reach the
caller with their level: WARNING and above as ``{"op": "err"}``, the rest as ``{"op": "log"}``.

``Backend`` is the headless entry point::

    Backend(on_message=print).run_panel("Lifetime.eta", "display", params={"file": "x.ptu"})
"""

from __future__ import annotations

import builtins
import importlib
import logging
import os
import socketserver
import tempfile
import threading
import wsgiref.simple_server

from .errors import EtaflowError
from .eta import ETA
from .recipe import Recipe

__all__ = ["Backend", "PanelError", "PanelETA"]

FRONTEND_LOGGERS = ("etabackend.frontend", "etaflow.frontend")

# inside a Script Panel, ETA's module names resolve to these
ALIASES = {
    "etabackend": "etaflow.compat.etabackend",
    "etabackend.tk": "etaflow.paneltk",
    "etabackend.tk.data": "etaflow.paneltk.data",
    "etabackend.tk.plot": "etaflow.paneltk.plot",
    "etabackend.tk.utils": "etaflow.paneltk.utils",
    "etabackend.clip": "etaflow.clip",
    "etabackend.eta": "etaflow.eta",
}


class PanelError(EtaflowError):
    """A Script Panel raised an exception (the user's code, not etaflow)."""


def _panel_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and (name == "etabackend" or name.startswith("etabackend.")):
        target = ALIASES.get(name)
        if target is None:
            raise ImportError(f"etaflow has no equivalent of {name!r} (Script Panels can use "
                              f"{', '.join(sorted(ALIASES))})")
        mod = importlib.import_module(target)
        if fromlist:
            return mod
        # "import etabackend.tk as etatk" binds the top package: give it the submodules
        top = importlib.import_module(ALIASES["etabackend"])
        return top
    return builtins.__import__(name, globals, locals, fromlist, level)


class _Forward(logging.Handler):
    def __init__(self, send):
        super().__init__(level=logging.DEBUG)
        self.send = send

    def emit(self, record):
        try:
            msg = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                msg += f": {record.exc_info[1]}"
            if hasattr(record, "progress"):        # window progress of clips(): a progress bar
                self.send({"op": "progress", "msg": msg, "percent": float(record.progress)})
                return
            self.send({"op": "err" if record.levelno >= logging.WARNING else "log", "msg": msg})
        except Exception:       # a logging handler must never raise
            pass


class PanelETA(ETA):
    """The ``eta`` object of a Script Panel: ETA's API plus ``send`` and ``display``."""

    def __init__(self, backend: "Backend", mode: str = "exact"):
        super().__init__(mode=mode)
        self._backend = backend
        self.compilecache_vars = {}

    def send(self, text, endpoint: str = "log"):
        self._backend._emit({"op": endpoint, "msg": str(text)})

    def display(self, app=None, type: str | None = None):
        return self._backend.display(app, type)

    def web_install(self, url, prefix="./", file_name=None):
        raise EtaflowError("eta.web_install downloads and unpacks files from the web; etaflow "
                           "does not do that from a Script Panel (install the files yourself)")


class Backend:
    """Runs Script Panels headless; every message goes to ``on_message(dict)``.

    ``output_dir`` receives what ``eta.display`` can render without a browser (Bokeh documents,
    applications and figures as HTML, matplotlib figures as PNG, plotly figures as HTML); Dash
    apps are served on ``ETA_IP:ETA_DASHPORT`` when ``serve_displays``, until their
    ``/shutdown`` page is opened (ETA's contract; until then other panels are refused).
    """

    def __init__(self, on_message=None, mode: str = "exact", output_dir: str | None = None,
                 serve_displays: bool = False):
        self.on_message = on_message or (lambda m: None)
        self.kernel = PanelETA(self, mode)
        self.output_dir = output_dir
        self.kernel.output_dir = output_dir     # where panels may save files (None: their choice)
        self.serve_displays = serve_displays
        self.displays: list = []          # what display() produced: paths or URLs
        self._live: list = []            # (url, done) of served displays
        for name in ("running", "paused", "finished"):
            self.kernel.add_callback(name, lambda n=name: self._emit({"op": n}))
        self._lock = threading.Lock()

    def _emit(self, msg: dict):
        try:
            self.on_message(msg)
        except Exception:
            pass

    # --- recipes and panels ---------------------------------------------------------------------
    def load(self, recipe) -> Recipe:
        rec = recipe if isinstance(recipe, Recipe) else Recipe(recipe)
        self.kernel.load_recipe(rec, compile=False)
        return rec

    def run_panel(self, recipe, panel: str, group: str | None = None, params: dict | None = None,
                  stop: threading.Event | None = None) -> dict:
        """Run one Script Panel (by name or id); returns its final globals ({} when it is not
        run because an earlier panel's display is still served, as ETA refuses then)."""
        live = next(((url, done) for url, done in self._live if not done.is_set()), None)
        if live is not None:
            # as ETA: one served result at a time; its page's /shutdown frees the backend
            self._emit({"op": "log", "msg": f"ETA.display: Script Panel is serving at {live[0]}."})
            self._emit({"op": "err", "msg": "The current script is not executed, because a "
                                            "previously executed script is still serving the "
                                            "results."})
            self._emit({"op": "dash", "url-dash": live[0], "url-shutdown": live[0] + "/shutdown"})
            return {}
        rec = self.load(recipe)
        entry = next((e for e in rec.entries if e.kind == "dpp" and panel in (e.name, e.id)),
                     None)
        if entry is None:
            raise KeyError(f"no Script Panel {panel!r}; panels: "
                           + ", ".join(repr(e.name) for e in rec.panels()))
        group = (group or entry.groups[0]).split(",")[0].strip() or "main"
        for k, v in (params or {}).items():
            rec.set_parameter(k, str(v), group if rec.get_parameter(k, group) is None else None)
        self.kernel.load_recipe(rec, compile=False)
        values = rec.parameters(group)
        self.kernel.compilecache_vars = {g: rec.parameters(g) for g in rec.groups()}
        g = {"__name__": "__etaflow_panel__", "eta": self.kernel,
             "__builtins__": dict(vars(builtins), __import__=_panel_import)}
        g.update(values)
        handler = _Forward(self._emit)
        loggers = [logging.getLogger(n) for n in FRONTEND_LOGGERS]
        old_levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.addHandler(handler)
            if lg.level == logging.NOTSET or lg.level > logging.INFO:
                lg.setLevel(logging.INFO)
        self._emit({"op": "log", "msg": f"Executing code in Script Panel {entry.name!r} in group "
                                        f"{group}..."})
        self._emit({"op": "running"})
        try:
            code = compile(entry.content or "", f"<Script Panel {entry.name}>", "exec")
            exec(code, g)
        except Exception as exc:
            kind = ("An internal error has occurred when numba is compiling the embedded code."
                    if "numba" in repr(type(exc)) else
                    "This error is caused by user-written code in the Script Panel, instead of "
                    "etaflow itself.")
            self._emit({"op": "err", "msg": f"{kind} {type(exc).__name__}: {exc}"})
            raise PanelError(f"Script Panel {entry.name!r} failed: {type(exc).__name__}: {exc}") \
                from exc
        finally:
            for lg, lv in zip(loggers, old_levels):
                lg.removeHandler(handler)
                lg.setLevel(lv)
        self._emit({"op": "finished"})
        return g

    # --- display --------------------------------------------------------------------------------
    def display(self, app=None, type: str | None = None):
        """Show a panel's result; returns a ``threading.Event`` that is set once nothing is being
        displayed any more (realtime panels loop until it is set)."""
        done = threading.Event()
        if app is None:
            logging.getLogger("etaflow.frontend").warning("ETA.display: nothing to display.")
            done.set()
            return done
        out = self.output_dir or tempfile.mkdtemp(prefix="etaflow-display-")
        os.makedirs(out, exist_ok=True)
        n = len(self.displays)
        kind = _display_kind(app, type)
        if kind == "matplotlib":
            path = os.path.join(out, f"display-{n}.png")
            app.savefig(path)
        elif kind == "plotly":
            path = os.path.join(out, f"display-{n}.html")
            app.write_html(path)
        elif kind == "bokeh":
            path = os.path.join(out, f"display-{n}.html")
            _save_bokeh(app, path)
        elif kind == "dash":
            path = self._serve_dash(app, done) if self.serve_displays else None
            if path is None:
                self._emit({"op": "log", "msg": "ETA.display: a Dash app was built; run with "
                                                "--serve (etaflow serve) to open it."})
                done.set()
                return done
            self.displays.append(path)
            self._live.append((path, done))
            self._emit({"op": "dash", "url-dash": path, "url-shutdown": path + "/shutdown"})
            return done
        else:
            logging.getLogger("etaflow.frontend").warning(
                f"ETA.display: cannot display a {type_name(app)}; give a Bokeh document "
                "function or Application, a Dash app, a matplotlib or a plotly figure.")
            done.set()
            return done
        self.displays.append(path)
        self._emit({"op": "display", "msg": path, "path": path})
        done.set()
        return done

    def serving(self) -> list:
        """URLs of the displays still served (their ``/shutdown`` not yet requested)."""
        return [url for url, done in self._live if not done.is_set()]

    def wait_displays(self) -> None:
        """Block until every served display is shut down."""
        for _, done in list(self._live):
            done.wait()

    def _serve_dash(self, app, done):
        """Serve a Dash app (its Flask server; any WSGI application) on ETA_IP:ETA_DASHPORT in
        daemon threads, with ETA's ``/shutdown`` route: it stops the server and sets ``done``,
        which ends a realtime panel's loop."""
        host = os.environ.get("ETA_IP", "127.0.0.1")
        try:
            port = int(os.environ.get("ETA_DASHPORT", "5679"))
        except ValueError:
            raise EtaflowError(f"ETA_DASHPORT must be a port number, not "
                               f"{os.environ['ETA_DASHPORT']!r}") from None
        try:
            server = serve_wsgi(getattr(app, "server", app), host, port, done)
        except OSError as exc:
            raise EtaflowError(f"ETA.display: cannot serve the Dash app on {host}:{port} "
                               f"({exc}); set ETA_DASHPORT to a free port") from exc
        return f"http://{host}:{server.server_port}"


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format, *args):     # requests go to the debug log, not stderr
        logging.getLogger("etaflow.display").debug(format, *args)


def serve_wsgi(wsgi, host: str, port: int, done: threading.Event):
    """Serve ``wsgi`` on host:port (0: any free port) until a request to ``/shutdown``, which
    replies, sets ``done`` and stops the server. Returns the server (``server_port``)."""
    def app(environ, start_response):
        if environ.get("PATH_INFO", "").rstrip("/") == "/shutdown":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return _ThenStop(b"The display is shut down.\n", server, done)
        return wsgi(environ, start_response)

    server = wsgiref.simple_server.make_server(host, port, app, _ThreadingWSGIServer,
                                               _QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="etaflow-display").start()
    return server


class _ThenStop:
    """A response body that, once sent (the server calls close()), sets ``done`` and stops the
    server: a process waiting on ``done`` may exit at once without cutting the reply short."""

    def __init__(self, body: bytes, server, done: threading.Event):
        self.body, self.server, self.done = body, server, done

    def __iter__(self):
        yield self.body

    def close(self):
        self.done.set()
        threading.Thread(target=_stop, args=(self.server,), daemon=True).start()


def _stop(server) -> None:
    server.shutdown()          # waits for serve_forever to return (another thread)
    server.server_close()


def type_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


def _display_kind(app, type_hint) -> str:
    mod = type(app).__module__ or ""
    if type_hint == "dash" or mod.startswith("dash"):
        return "dash"
    if mod.startswith("matplotlib"):
        return "matplotlib"
    if mod.startswith("plotly"):
        return "plotly"
    if type_hint == "bokeh" or mod.startswith("bokeh") or callable(app):
        return "bokeh"
    return "unknown"


def _save_bokeh(app, path: str) -> None:
    """A Bokeh document function, Application, figure or layout, rendered to a standalone file."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.resources import CDN
    doc = Document()
    if hasattr(app, "create_document"):          # bokeh.application.Application
        doc = app.create_document()
    elif callable(app) and not hasattr(app, "document"):
        res = app(doc)
        doc = res if isinstance(res, Document) else doc
    else:
        doc.add_root(app)
    with open(path, "w", encoding="utf-8") as f:
        f.write(file_html(doc, CDN, "etaflow"))
