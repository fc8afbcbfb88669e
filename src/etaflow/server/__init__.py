"""The backend server (``etaflow serve``): ETA's WebSocket protocol for ETA's GUI and etaflow's.

``serve()`` listens on ``$ETA_IP:$ETA_PORT`` (default ``127.0.0.1:5678``). Listening beyond
loopback requires an access token (``token=`` or ``$ETAFLOW_TOKEN``) that every client must
present. The protocol and its message schemas are documented in :mod:`etaflow.server.protocol`;
the HTTP routes, access rules and the Script Panel run queue in :mod:`etaflow.server.app`.
aiohttp (the ``server`` extra) is imported only when a server starts.
"""

from __future__ import annotations

import logging
import os
import sys

from .protocol import is_loopback

__all__ = ["serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5678


def _error(text: str) -> None:
    print(f"etaflow serve: error: {text}", file=sys.stderr, flush=True)


def serve(host: str | None = None, port: int | None = None, token: str | None = None,
          mode: str = "exact") -> int:
    """Run the backend until Ctrl-C (or ``/shutdown`` with the token). Returns an exit code:
    0 after a normal stop, 1 when the server cannot start (port in use, aiohttp missing), 2 for
    a refused configuration (no token for a non-loopback address, a bad port) — checked before
    anything is bound."""
    host = host if host else (os.environ.get("ETA_IP") or DEFAULT_HOST)
    if port is None:
        env = os.environ.get("ETA_PORT") or str(DEFAULT_PORT)
        try:
            port = int(env)
        except ValueError:
            _error(f"ETA_PORT must be a port number, not {env!r}")
            return 2
    if not 0 <= int(port) <= 65535:
        _error(f"port must be 0..65535, not {port}")
        return 2
    token = token or os.environ.get("ETAFLOW_TOKEN") or None
    if not is_loopback(host) and not token:
        _error(f"listening on {host!r} (beyond this machine) requires an access token: pass "
               "--token or set ETAFLOW_TOKEN (e.g. python -c \"import secrets; "
               "print(secrets.token_urlsafe())\"); clients then present it as ?token=... or "
               "'Authorization: Bearer ...'. Script Panels run arbitrary Python.")
        return 2
    if token and len(token) < 16:
        print("etaflow serve: warning: the access token is short (< 16 characters); anyone who "
              "can guess it can run code on this machine", file=sys.stderr, flush=True)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        _error("the server needs aiohttp: pip install 'etaflow[server]'")
        return 1
    import asyncio

    from .app import Server
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    server = Server(host, int(port), token, mode=mode)

    def started():       # SIGTERM (kill, systemd, docker stop) shuts down like Ctrl-C
        try:
            import signal
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.shutdown)
        except (NotImplementedError, RuntimeError, AttributeError, ValueError):
            pass         # Windows, or not the main thread

    try:
        asyncio.run(server.run(started=started))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        _error(f"cannot listen on {host}:{port}: {e}")
        return 1
    return 0
