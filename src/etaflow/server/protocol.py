"""ETA's WebSocket protocol, sans-I/O: parse and validate requests, build the messages.

Nothing here touches a socket or a thread. The asyncio shell (:mod:`etaflow.server.app`) feeds
each text frame of a client to :meth:`Connection.receive`, then sends :meth:`Connection.to_send`
to that client and executes :meth:`Connection.events` (validated :class:`Request` objects).

Requests (client -> server)
---------------------------
One JSON object per text frame: ``{"method": <name>, "args": [...]}`` (``args`` may be omitted
when empty). ``etaobj`` is the parsed recipe object, exactly as ETA's GUI sends it (a dict with an
``eta_index_table`` string and one key per entry); a JSON *string* of that object is accepted too,
but never a file name. Only these methods exist::

    compile_eta(etaobj)                          compile every group; broadcasts the table
    recipe_set_filename(etaobj, id, key, path)   set parameter `key` to `path`; broadcasts the table
                                                 (the path is an argument: the server never opens
                                                 a file dialog; "" leaves the recipe unchanged)
    process_eta(etaobj, id="code", group="main") queue the Script Panel whose id (or name) is `id`
    recipe_update()                              broadcast the current table
    stop(which="running")                        "running": stop the running Script Panel;
                                                 "all": that and every queued request;
                                                 an int: the request with that number

Messages (server -> clients)
----------------------------
JSON objects; every field not listed is absent. Most are broadcast to every connected client (as
ETA does); replies to malformed requests go to the sender only.

``{"op": "log", "msg": str}``
    Information. The queue notice adds ``"job": int, "position": int`` (1 = next to run);
    progress lines ("Progress 40% of <file>", as in ETA) add ``"percent": float``.
``{"op": "err", "msg": str}``
    An error or a warning (WARNING and above of the frontend loggers). Additions:
    recipe errors: ``"error": "RecipeError", "vi": str|null, "line": int|null,
    "column": int|null, "message": str`` (the message without the location) so an editor can
    underline it; malformed requests: ``"error": "RequestError", "method": str|null``;
    a stopped or cancelled request: ``"error": "Stopped", "job": int`` and ``msg`` containing
    "stopped" (or "cancelled"); a failure of the server itself while handling a request
    (a bug): ``"method": str`` and ``msg`` starting with "internal error in".
``{"op": "table", "table": str}``
    The recipe's index table as a JSON *string* (parameters, then Script Panels, then VIs).
``{"op": "running"}`` / ``{"op": "paused"}`` / ``{"op": "finished"}``
    A Script Panel (or an ``eta.run`` in it) started / an analysis ended / the panel ended
    normally (a ``table`` follows). A panel that fails or is stopped sends ``err`` instead of
    ``finished``.
``{"op": "discard", "msg": ""}``
    The GUI should drop the displayed result (sent when compiling and when a panel starts).
``{"op": "dash", "url-dash": str, "url-shutdown": str}``
    A result to show in a frame: a served Dash app, or a figure ``eta.display`` rendered to a
    file, served by this server under ``/display/<name>`` (then also ``"path"``: the file on the
    server; URLs carry ``?token=`` for clients that connected with one).
``{"op": <endpoint>, "msg": str}``
    Whatever a Script Panel sends with ``eta.send(text, endpoint)``.

Back-pressure: each client has an outbox. Past :data:`MAX_BACKLOG` unsent messages, further
``log`` messages and custom ``eta.send`` endpoints for that client are dropped (counted, and
reported to it as one ``log`` once it catches up); every other op is always delivered.

Limits: a request frame holds at most :data:`MAX_MESSAGE_BYTES`; at most :data:`MAX_QUEUED`
``process_eta`` requests wait (more are refused with an ``err``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass, field

from ..errors import EtaflowError, RecipeError
from ..recipe import Recipe

__all__ = ["Connection", "Request", "RequestError", "METHODS", "MAX_BACKLOG", "MAX_MESSAGE_BYTES",
           "MAX_QUEUED", "parse_request", "encode", "log", "err", "error_message", "recipe_error",
           "table", "discard", "dash", "table_of", "is_loopback", "token_matches",
           "presented_token", "is_control", "CONTROL_OPS"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024   # largest request frame (a recipe with embedded data)
MAX_BACKLOG = 1000                     # unsent messages per client before log messages are dropped
MAX_QUEUED = 100                       # process_eta requests waiting to run

# ops that are never dropped for a slow client (state changes and errors)
CONTROL_OPS = frozenset({"err", "table", "running", "paused", "finished", "discard", "dash"})


class RequestError(EtaflowError, ValueError):
    """A request frame is not a valid call of a documented method."""

    def __init__(self, problem: str, method: str | None = None):
        self.problem = problem
        self.method = method
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.method}: {self.problem}" if self.method else self.problem


@dataclass(frozen=True)
class Request:
    """A validated request. ``recipe`` is set for the methods that take ``etaobj``; ``args`` holds
    the remaining arguments by name, defaults filled in."""

    method: str
    args: dict = field(default_factory=dict)
    recipe: Recipe | None = None


# method -> [(name, type(s), default)]; a default of _REQUIRED means the argument is required
_REQUIRED = object()
METHODS = {
    "compile_eta": [("etaobj", "recipe", _REQUIRED)],
    "recipe_set_filename": [("etaobj", "recipe", _REQUIRED), ("id", str, _REQUIRED),
                            ("key", str, _REQUIRED), ("path", str, _REQUIRED)],
    "process_eta": [("etaobj", "recipe", _REQUIRED), ("id", str, "code"),
                    ("group", str, "main")],
    "recipe_update": [],
    "stop": [("which", (str, int), "running")],
}


def _signature(method: str) -> str:
    parts = []
    for name, _, default in METHODS[method]:
        parts.append(name if default is _REQUIRED else f"{name}={default!r}")
    return f"{method}({', '.join(parts)})"


def _recipe_arg(value, method: str) -> Recipe:
    if isinstance(value, str):
        # a JSON text of the object; never a path (Recipe() would open a file on the server)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RequestError(f"etaobj must be the recipe object (or its JSON text), got a string "
                               f"that is not JSON: {e}", method) from None
    if not isinstance(value, dict):
        raise RequestError(f"etaobj must be the recipe object, not {_type(value)}", method)
    return Recipe(value)           # RecipeError when it is not a recipe


def _type(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def parse_request(text: str | bytes) -> Request:
    """Parse one request frame.

    Raises:
        RequestError: bad JSON, not an object, unknown method, wrong argument count or types,
            or (process_eta) no Script Panel with that id.
        RecipeError: ``etaobj`` is not a recipe.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the frame is not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestError(f"the frame is not JSON ({e}); send "
                           '{"method": name, "args": [...]}') from None
    if not isinstance(obj, dict):
        raise RequestError(f'a request is an object {{"method": name, "args": [...]}}, '
                           f"not {_type(obj)}")
    method = obj.get("method")
    if not isinstance(method, str):
        raise RequestError(f'"method" must be a string, not {_type(method)}')
    if method not in METHODS:
        raise RequestError(f"unknown method {method!r}; methods: "
                           + ", ".join(_signature(m) for m in METHODS), method)
    unknown = set(obj) - {"method", "args"}
    if unknown:
        raise RequestError(f"unexpected keys {sorted(unknown)} (only \"method\" and \"args\")",
                           method)
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise RequestError(f'"args" must be an array, not {_type(args)}', method)
    spec = METHODS[method]
    n_required = sum(1 for _, _, d in spec if d is _REQUIRED)
    if not n_required <= len(args) <= len(spec):
        if method == "recipe_set_filename" and len(args) == 3:
            raise RequestError("the file path is required as the 4th argument: etaflow never "
                               "opens a file dialog on the server; choose the file in the GUI "
                               "and send its path", method)
        want = f"{n_required}" if n_required == len(spec) else f"{n_required} to {len(spec)}"
        raise RequestError(f"takes {want} argument(s), got {len(args)}: {_signature(method)}",
                           method)
    values: dict = {}
    recipe = None
    for i, (name, kind, default) in enumerate(spec):
        value = args[i] if i < len(args) else default
        if kind == "recipe":
            recipe = _recipe_arg(value, method)
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise RequestError(f"argument {name!r} must be {names}, not {_type(value)}", method)
        values[name] = value
    if method == "process_eta":
        panel = values["id"]
        if not any(e.kind == "dpp" and panel in (e.id, e.name) for e in recipe.entries):
            raise RequestError(f"no Script Panel {panel!r} in the recipe; panels: "
                               + (", ".join(f"{e.id} ({e.name!r})" for e in recipe.panels())
                                  or "none"), method)
    if method == "stop" and isinstance(values["which"], str) \
            and values["which"] not in ("running", "all"):
        raise RequestError(f'which must be "running", "all" or a request number, not '
                           f'{values["which"]!r}', method)
    return Request(method, values, recipe)


# --- messages --------------------------------------------------------------------------------
def encode(msg: dict) -> str:
    """The text frame of a message."""
    return json.dumps(msg, default=str)


def log(msg: str, **extra) -> dict:
    return {"op": "log", "msg": str(msg), **extra}


def err(msg: str, **extra) -> dict:
    return {"op": "err", "msg": str(msg), **extra}


def discard() -> dict:
    return {"op": "discard", "msg": ""}


def dash(url: str, shutdown_url: str) -> dict:
    return {"op": "dash", "url-dash": url, "url-shutdown": shutdown_url}


def table_of(recipe: Recipe | None) -> str:
    """ETA's ``Recipe.get_table()``: JSON string of the rows, parameters then panels then VIs."""
    if recipe is None:
        return "[]"
    rows = [e.row for kind in ("var", "dpp", "vi") for e in recipe.entries if e.kind == kind]
    return json.dumps(rows)


def table(recipe: Recipe | None) -> dict:
    return {"op": "table", "table": table_of(recipe)}


def recipe_error(exc: RecipeError, prefix: str = "") -> dict:
    """An ``err`` message with the error's location fields, for an editor to underline."""
    return err(prefix + str(exc), error="RecipeError", vi=exc.vi, line=exc.line,
               column=exc.column, message=exc.message)


def error_message(exc: BaseException) -> dict:
    """The ``err`` reply to a request that could not be accepted."""
    if isinstance(exc, RecipeError):
        return recipe_error(exc)
    if isinstance(exc, RequestError):
        return err(str(exc), error="RequestError", method=exc.method)
    return err(f"{type(exc).__name__}: {exc}")


def is_control(msg: dict) -> bool:
    """Whether a message must reach a slow client (see the back-pressure policy above)."""
    return msg.get("op") in CONTROL_OPS


# --- per-connection state ----------------------------------------------------------------------
class Connection:
    """Protocol state of one client connection."""

    def __init__(self):
        self._events: list[Request] = []
        self._out: list[str] = []

    def receive(self, frame: str | bytes) -> None:
        """Receive one WebSocket frame (text, or binary holding UTF-8 text).

        After calling this method:

        - send :meth:`to_send` to this client (error replies to malformed frames);
        - execute :meth:`events` in order.

        Never raises: a bad frame becomes an ``err`` reply and the connection stays usable.
        """
        try:
            self._events.append(parse_request(frame))
        except Exception as e:          # RequestError, RecipeError, or a bug: never fatal
            self._out.append(encode(error_message(e)))

    def reply(self, msg: dict) -> None:
        """Queue a message for this client only; then send :meth:`to_send`."""
        self._out.append(encode(msg))

    def events(self) -> list[Request]:
        """The requests received since the last call, in order."""
        ev, self._events = self._events, []
        return ev

    def to_send(self) -> list[str]:
        """Text frames to send to this client, in order."""
        out, self._out = self._out, []
        return out


# --- access control ----------------------------------------------------------------------------
def is_loopback(host: str | None) -> bool:
    """Whether binding to ``host`` only accepts connections from this machine. Only literal
    loopback addresses and ``localhost`` count (a name is not resolved)."""
    if host is None:
        return False
    h = host.strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def presented_token(query: dict, headers: dict) -> str | None:
    """The token a client presented: ``?token=`` or ``Authorization: Bearer <token>``."""
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    tok = query.get("token")
    return tok if isinstance(tok, str) else None


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of an access token."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))
