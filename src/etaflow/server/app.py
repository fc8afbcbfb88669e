"""The aiohttp shell around :mod:`etaflow.server.protocol`, and the Script Panel run queue.

Routes: ``GET /`` redirects to ``/index.html``; ``/index.html`` and static files come from the
package folder ``etaflow/web`` when it exists (a placeholder page if it has no ``index.html``);
``/ws`` is the WebSocket; ``/display/<name>`` serves what ``eta.display`` rendered;
``/shutdown-display`` tells the GUIs to drop the displayed result; ``/shutdown`` stops the server,
but only on a server started with an access token (and the request must present it).

Access: with a token, every request must present it (``?token=`` or ``Authorization: Bearer``),
else 403. Without one the server only listens on loopback (``serve`` refuses otherwise) and,
against DNS rebinding and cross-site WebSocket hijacking by a web page in the local browser,
refuses requests whose ``Host`` is not a loopback name or whose ``Origin`` (sent by browsers) is
not a loopback page.

The run queue: ``process_eta`` requests form one FIFO; one Script Panel runs at a time, on the
server's single kernel (one :class:`~etaflow.panel.Backend`, like ETA), in a thread of its own,
so the event loop keeps serving (``stop`` included). Stopping a panel sets the kernel's stop flag
(``eta.run`` raises ``RunStopped`` at its next chunk); if the panel has not ended after
:data:`STOP_GRACE_S`, :class:`PanelStopped` (a ``KeyboardInterrupt``) is raised asynchronously in
its thread, again every second while it keeps running. Such an exception is only sent while the
panel's code runs (checked under a lock); one sent but not yet delivered when the panel ends is
caught or cleared before the thread reports back. A thread blocked in one long C call (for
example ``time.sleep(600)``) only sees it when that call returns.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import os
import shutil
import tempfile
import threading
import traceback
import urllib.parse

from aiohttp import WSMsgType, web

from ..errors import RecipeError
from ..eta import ETA
from ..panel import FRONTEND_LOGGERS, Backend, PanelError, _Forward
from . import protocol as P

__all__ = ["Server", "ServerThread", "PanelStopped", "STOP_GRACE_S"]

log = logging.getLogger("etaflow.server")

STOP_GRACE_S = 0.3        # how long eta.run gets to stop at a chunk boundary before we interrupt
FORCE_INTERVAL_S = 1.0    # then the interrupt is repeated this often while the panel still runs
FORCE_MAX = 30
WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")

PLACEHOLDER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>etaflow</title></head>
<body><h1>etaflow backend</h1>
<p>The server is running. Connect ETA's GUI or a client to the WebSocket at <code>/ws</code>.</p>
</body></html>
"""


class PanelStopped(KeyboardInterrupt):
    """Raised in a Script Panel's thread when a client stops it (panels written for Ctrl-C can
    catch ``KeyboardInterrupt`` to clean up)."""


def _set_async_exc(tid: int, exc) -> int:
    """Schedule ``exc`` (a class, or None to cancel a pending one) in thread ``tid``."""
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(tid), None if exc is None else ctypes.py_object(exc))


class Job:
    """One ``process_eta`` request."""

    def __init__(self, number: int, recipe, panel: str, group: str):
        self.number = number
        self.recipe = recipe
        self.panel = panel
        self.group = group
        entry = next(e for e in recipe.entries if e.kind == "dpp" and panel in (e.id, e.name))
        self.name = entry.name
        self.state = "queued"          # queued -> running -> done
        self.stop_requested = False
        self.thread: threading.Thread | None = None
        self.tid: int | None = None
        self.in_code = False           # guarded by Server._async_lock
        self.forced = 0
        self.recipe_gen = 0

    def describe(self) -> str:
        return f"request #{self.number} (Script Panel {self.name!r}, group {self.group})"


class _Bridge(logging.Handler):
    """Forwards a frontend logger's records to every client, except while a Script Panel runs
    (the panel runtime forwards them itself then)."""

    def __init__(self, logger: logging.Logger, post):
        super().__init__(level=logging.DEBUG)
        self.logger = logger
        self.post = post

    def emit(self, record):
        try:
            if any(isinstance(h, _Forward) for h in self.logger.handlers):
                return
            msg = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                msg += f": {record.exc_info[1]}"
            out = {"op": "err" if record.levelno >= logging.WARNING else "log", "msg": msg}
            if hasattr(record, "progress"):
                out["percent"] = float(record.progress)
            self.post(out)
        except Exception:
            pass


class _Client:
    """One WebSocket client: an outbox drained by its own task (see the back-pressure policy in
    :mod:`etaflow.server.protocol`)."""

    def __init__(self, ws, base_url: str, token: str | None, display_dir: str):
        self.ws = ws
        self.base_url = base_url
        self.token = token
        self.display_dir = display_dir
        self.outbox: collections.deque[str] = collections.deque()
        self.dropped = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def _url(self, path: str) -> str:
        q = f"?token={urllib.parse.quote(self.token)}" if self.token else ""
        return f"{self.base_url}{path}{q}"

    def put(self, msg: dict) -> None:
        if msg.get("op") == "display":
            path = str(msg.get("path") or msg.get("msg") or "")
            if os.path.dirname(os.path.abspath(path)) == os.path.abspath(self.display_dir):
                name = urllib.parse.quote(os.path.basename(path))
                msg = dict(P.dash(self._url(f"/display/{name}"), self._url("/shutdown-display")),
                           path=path)
        if not P.is_control(msg) and len(self.outbox) >= P.MAX_BACKLOG:
            self.dropped += 1
            return
        self.put_text(P.encode(msg))

    def put_text(self, text: str) -> None:
        self.outbox.append(text)
        self.wake.set()

    async def pump(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while self.outbox:
                    await self.ws.send_str(self.outbox.popleft())
                    if self.dropped and len(self.outbox) < P.MAX_BACKLOG // 2:
                        n, self.dropped = self.dropped, 0
                        await self.ws.send_str(P.encode(P.log(
                            f"{n} log message(s) were dropped: this client reads too slowly")))
        except (ConnectionError, RuntimeError):
            pass           # the client went away; its handler ends on its own


class Server:
    """The backend: ``await start()``, then ``await close()``; ``run()`` does both around a wait
    for ``/shutdown`` (or cancellation)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5678, token: str | None = None,
                 mode: str = "exact"):
        self.host = host
        self.port = port
        self.token = token or None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._clients: set[_Client] = set()
        self._display_dir = tempfile.mkdtemp(prefix="etaflow-displays-")
        self.backend = Backend(self._from_panel, mode=mode, output_dir=self._display_dir,
                               serve_displays=True)
        self._compiler = ETA(mode=mode)       # compile_eta never disturbs a running panel
        self._compile_lock: asyncio.Lock | None = None
        self._recipe = None                   # the recipe whose table recipe_update sends
        self._recipe_gen = 0                  # bumped each time a request sets it
        self._queue: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        self._numbers = 0
        self._async_lock = threading.Lock()
        self._closing = False
        self._shutdown: asyncio.Event | None = None
        self._bridges: list = []

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; ``self.port`` is the bound port afterwards (pass 0 for any)."""
        self._loop = asyncio.get_running_loop()
        self._compile_lock = asyncio.Lock()
        self._shutdown = asyncio.Event()
        self._runner = web.AppRunner(self._make_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]
        self._install_bridges()

    async def run(self, started=None) -> None:
        """Start, call ``started()`` if given, serve until :meth:`shutdown` (``/shutdown`` with
        the token) or cancellation (Ctrl-C), then close."""
        await self.start()
        log.info("etaflow backend: %s (WebSocket %s/ws)%s", self.url,
                 self.url.replace("http", "ws", 1),
                 "; clients must present the access token" if self.token else "")
        try:
            if started is not None:
                started()
            await self._shutdown.wait()
        finally:
            await self.close()

    def shutdown(self) -> None:
        """Make :meth:`run` return (from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._shutdown.set)
            except RuntimeError:
                pass

    async def close(self) -> None:
        self._closing = True
        while self._queue:
            self._cancel(self._queue[0])
        job = self._current
        if job is not None:
            self._stop_job(job)
            self._force(job)
        for c in list(self._clients):
            try:
                await c.ws.close(code=1001, message=b"server shutdown")
            except Exception:
                pass
        if self._runner is not None:
            await self._runner.cleanup()
        self._remove_bridges()
        if job is not None and job.thread is not None:
            await asyncio.to_thread(job.thread.join, 3.0)
        shutil.rmtree(self._display_dir, ignore_errors=True)

    def _install_bridges(self):
        for name in FRONTEND_LOGGERS:
            lg = logging.getLogger(name)
            h = _Bridge(lg, self._post)
            old = lg.level
            if lg.level == logging.NOTSET or lg.level > logging.INFO:
                lg.setLevel(logging.INFO)
            lg.addHandler(h)
            self._bridges.append((lg, h, old))

    def _remove_bridges(self):
        for lg, h, old in self._bridges:
            lg.removeHandler(h)
            lg.setLevel(old)
        self._bridges.clear()

    # --- messages -------------------------------------------------------------------------------
    def _broadcast(self, msg: dict) -> None:
        """Send to every client (event loop thread only)."""
        for c in list(self._clients):
            c.put(msg)

    def _post(self, msg: dict) -> None:
        """Broadcast from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._broadcast, msg)
        except RuntimeError:          # the loop is closing
            pass

    def _from_panel(self, msg: dict) -> None:
        if msg.get("op") == "progress":    # ETA's GUI shows progress as a log line
            msg = P.log(msg.get("msg", ""), percent=msg.get("percent"))
        job = self._current
        if job is not None and job.stop_requested and msg.get("op") == "err" \
                and ("RunStopped" in msg.get("msg", "") or "PanelStopped" in msg.get("msg", "")):
            return                    # reported once, as "stopped", when the panel has ended
        self._post(msg)

    def _set_recipe(self, rec) -> int:
        self._recipe = rec
        self._recipe_gen += 1
        return self._recipe_gen

    # --- HTTP -----------------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=P.MAX_MESSAGE_BYTES)
        app.router.add_get("/", self._root)
        app.router.add_get("/index.html", self._index)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/shutdown", self._shutdown_route)
        app.router.add_get("/shutdown-display", self._shutdown_display)
        app.router.add_get("/display/{name}", self._display_file)
        if os.path.isdir(WEB_DIR):
            app.router.add_static("/", WEB_DIR, follow_symlinks=False)
        return app

    @web.middleware
    async def _guard(self, request, handler):
        if self.token:
            presented = P.presented_token(dict(request.query), dict(request.headers))
            if not P.token_matches(self.token, presented):
                raise web.HTTPForbidden(text="etaflow: this server requires its access token "
                                             "(?token=... or Authorization: Bearer ...)\n")
        else:
            if not P.is_loopback(request.url.host or ""):
                raise web.HTTPForbidden(text="etaflow: the Host header must be a loopback name "
                                             "(DNS rebinding protection); start the server "
                                             "with a token to allow other names\n")
            origin = request.headers.get("Origin")
            if origin is not None and not _loopback_origin(origin):
                raise web.HTTPForbidden(text=f"etaflow: requests from pages of {origin} are "
                                             "refused; start the server with a token to allow "
                                             "them\n")
        return await handler(request)

    async def _root(self, request):
        raise web.HTTPFound("/index.html" + (f"?{request.query_string}"
                                             if request.query_string else ""))

    async def _index(self, request):
        if not os.path.isdir(WEB_DIR):
            raise web.HTTPNotFound(text="etaflow: no web GUI is installed; connect ETA's GUI or "
                                        "a WebSocket client to /ws\n")
        path = os.path.join(WEB_DIR, "index.html")
        if os.path.isfile(path):
            return web.FileResponse(path)
        return web.Response(text=PLACEHOLDER_HTML, content_type="text/html")

    async def _shutdown_route(self, request):
        if not self.token:      # the guard already checked the token when there is one
            raise web.HTTPForbidden(text="etaflow: /shutdown is disabled on a server without an "
                                         "access token; stop it where it runs (Ctrl-C)\n")
        log.info("shutdown requested by %s", request.remote)
        self._loop.call_later(0.1, self._shutdown.set)   # after the reply
        return web.json_response(["shutting down"])

    async def _shutdown_display(self, request):
        self._broadcast(P.discard())
        return web.json_response(["success"])

    async def _display_file(self, request):
        name = request.match_info["name"]
        path = os.path.join(self._display_dir, name)
        if os.path.basename(name) != name or name.startswith(".") or not os.path.isfile(path):
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    # --- WebSocket ------------------------------------------------------------------------------
    async def _ws(self, request):
        ws = web.WebSocketResponse(max_msg_size=P.MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        token = P.presented_token(dict(request.query), dict(request.headers)) if self.token \
            else None
        client = _Client(ws, f"{request.scheme}://{request.host}", token, self._display_dir)
        client.task = asyncio.create_task(client.pump())
        self._clients.add(client)
        conn = P.Connection()
        try:
            async for m in ws:
                if m.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                conn.receive(m.data)
                for text in conn.to_send():
                    client.put_text(text)
                for req in conn.events():
                    await self._handle(req, conn)
                    for text in conn.to_send():
                        client.put_text(text)
        finally:
            self._clients.discard(client)
            client.task.cancel()
        return ws

    async def _handle(self, req: P.Request, conn: P.Connection) -> None:
        try:
            await getattr(self, "_m_" + req.method)(req, conn)
        except Exception as e:            # a bug of ours: report it, keep serving
            log.exception("%s failed", req.method)
            conn.reply(P.err(f"internal error in {req.method}: {type(e).__name__}: {e}",
                             method=req.method))

    # --- methods (the names are the protocol's; see protocol.METHODS) ---------------------------
    async def _m_compile_eta(self, req, conn):
        self._broadcast(P.discard())
        rec = req.recipe
        try:
            async with self._compile_lock:
                await asyncio.to_thread(self._compiler.load_recipe, rec, True, False)
        except RecipeError as e:
            self._broadcast(P.recipe_error(e, "Load recipe failed. "))
            return
        except Exception as e:
            log.warning("compile_eta: %s", traceback.format_exc())
            self._broadcast(P.err(f"Load recipe failed. {type(e).__name__}: {e}"))
            return
        self._set_recipe(rec)
        self._broadcast(P.table(rec))

    async def _m_recipe_set_filename(self, req, conn):
        rec, path = req.recipe, req.args["path"]
        if path:
            rec.set_parameter(req.args["key"], path)
            if not os.path.exists(path):
                self._broadcast(P.log(f"note: {path!r} does not exist on the server's machine"))
        self._set_recipe(rec)
        self._broadcast(P.table(rec))

    async def _m_recipe_update(self, req, conn):
        self._broadcast(P.table(self._recipe))

    async def _m_process_eta(self, req, conn):
        if self._closing:
            conn.reply(P.err("the server is shutting down", method=req.method))
            return
        if len(self._queue) >= P.MAX_QUEUED:
            conn.reply(P.err(f"the run queue is full ({P.MAX_QUEUED} requests wait); try again "
                             "later or stop some", method=req.method))
            return
        self._numbers += 1
        job = Job(self._numbers, req.recipe, req.args["id"], req.args["group"])
        self._queue.append(job)
        if self._current is not None:
            ahead = len(self._queue)
            self._broadcast(P.log(f"Request #{job.number} queued: Script Panel {job.name!r} runs "
                                  f"after {ahead} other request(s).", job=job.number,
                                  position=ahead))
        self._start_next()

    async def _m_stop(self, req, conn):
        which = req.args["which"]
        cur = self._current
        if which == "all":
            while self._queue:
                self._cancel(self._queue[0])
            if cur is not None:
                self._stop_job(cur)
        elif which == "running":
            if cur is None:
                conn.reply(P.log("No Script Panel is running."))
            else:
                self._stop_job(cur)
        else:
            if cur is not None and cur.number == which:
                self._stop_job(cur)
                return
            for job in self._queue:
                if job.number == which:
                    self._cancel(job)
                    return
            conn.reply(P.err(f"no running or queued request #{which}", method="stop"))

    # --- the run queue --------------------------------------------------------------------------
    def _start_next(self) -> None:
        while self._current is None and self._queue and not self._closing:
            job = self._queue.popleft()
            self._current = job
            job.state = "running"
            job.recipe_gen = self._set_recipe(job.recipe)
            self.backend.kernel.clear_stop()   # here, not in the thread: a stop may follow at once
            self._broadcast(P.discard())
            job.thread = threading.Thread(target=self._job_main, args=(job,), daemon=True,
                                          name=f"etaflow-panel-{job.number}")
            try:
                job.thread.start()
            except RuntimeError as e:          # no thread to be had: report, try the next
                job.state = "done"
                self._current = None
                self._broadcast(P.err(f"{job.describe()} could not start: {e}", job=job.number))

    def _job_main(self, job: Job) -> None:
        """The panel's thread. A PanelStopped may arrive anywhere until ``in_code`` is cleared
        (and once more right after): everything up to the report is inside handlers."""
        outcome = None
        try:
            try:
                job.tid = threading.get_ident()
                with self._async_lock:
                    job.in_code = not job.stop_requested
                if not job.in_code:
                    raise PanelStopped()
                self._run_job(job)
                outcome = "finished"
            finally:
                with self._async_lock:
                    job.in_code = False
        except BaseException as e:        # the panel's own errors were reported by the runtime
            if outcome is None:
                outcome = e
        try:
            _set_async_exc(job.tid, None)  # one sent but not delivered yet
        except BaseException:             # ... or delivered just now
            pass
        loop = self._loop
        try:
            loop.call_soon_threadsafe(self._job_ended, job, outcome)
        except RuntimeError:
            pass

    def _run_job(self, job: Job) -> None:
        kernel = self.backend.kernel
        group = job.group.split(",")[0].strip() or "main"
        kernel.load_recipe(job.recipe, compile=False, update_gui=False)
        if job.recipe.vis(group):
            kernel.program_source(group)   # VI errors, located, before the panel runs
        self.backend.run_panel(job.recipe, job.panel, group=job.group)

    def _job_ended(self, job: Job, outcome) -> None:
        job.state = "done"
        if self._current is job:
            self._current = None
        try:
            self._report(job, outcome)
        except Exception:                  # never let a report stall the queue
            log.exception("reporting the end of request #%d failed", job.number)
        self._start_next()

    def _report(self, job: Job, outcome) -> None:
        # the panel may have changed parameters: send its table (as ETA does), unless a later
        # request (say, a file chosen in the GUI meanwhile) set a newer recipe
        newest = self._recipe_gen == job.recipe_gen and self.backend.kernel.recipe is not None
        if newest:
            self._recipe = self.backend.kernel.recipe
        if outcome == "finished":
            if newest:
                self._broadcast(P.table(self._recipe))
        elif job.stop_requested:
            self._broadcast(P.err(f"Script Panel {job.name!r} (request #{job.number}) stopped.",
                                  error="Stopped", job=job.number))
        elif isinstance(outcome, RecipeError):
            self._broadcast(P.recipe_error(outcome, "Load recipe failed. "))
        elif isinstance(outcome, PanelError):
            if isinstance(outcome.__cause__, RecipeError):
                self._broadcast(P.recipe_error(outcome.__cause__))
        elif isinstance(outcome, BaseException):
            if not isinstance(outcome, (SystemExit, KeyboardInterrupt)):
                log.warning("request #%d: %s", job.number, "".join(traceback.format_exception(
                    type(outcome), outcome, outcome.__traceback__)))
            self._broadcast(P.err(f"Script Panel {job.name!r} ended with "
                                  f"{type(outcome).__name__}: {outcome}"))

    def _cancel(self, job: Job) -> None:
        self._queue.remove(job)
        job.state = "done"
        self._broadcast(P.err(f"{job.describe()[0].upper()}{job.describe()[1:]} cancelled before "
                              "it ran.", error="Stopped", job=job.number))

    def _stop_job(self, job: Job) -> None:
        if job.stop_requested:          # asked again: interrupt now
            self._force(job)
            return
        job.stop_requested = True
        self.backend.kernel.request_stop()
        self._broadcast(P.log(f"Stopping Script Panel {job.name!r} (request #{job.number})..."))
        self._loop.call_later(STOP_GRACE_S, self._force, job)

    def _force(self, job: Job) -> None:
        if job.state != "running":
            return
        with self._async_lock:
            if job.in_code and job.tid is not None:
                _set_async_exc(job.tid, PanelStopped)
                job.forced += 1
        if job.forced < FORCE_MAX and not self._closing:
            self._loop.call_later(FORCE_INTERVAL_S, self._force, job)


def _loopback_origin(origin: str) -> bool:
    try:
        u = urllib.parse.urlsplit(origin)
    except ValueError:
        return False
    return u.scheme in ("http", "https") and P.is_loopback(u.hostname or "")


class ServerThread:
    """:meth:`Server.run` on its own event loop in a background thread (tests, notebooks)::

        with ServerThread(port=0) as st:
            ...  # connect to st.server.url + "/ws"
    """

    def __init__(self, **kwargs):
        self.server = Server(**kwargs)
        self._thread = threading.Thread(target=self._main, daemon=True, name="etaflow-server")
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _main(self):
        try:
            asyncio.run(self.server.run(started=self._ready.set))
        except BaseException as e:
            self._error = e
        finally:
            self._ready.set()

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the server did not start")
        if self._error is not None:
            raise self._error
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self.server.shutdown()
        self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
