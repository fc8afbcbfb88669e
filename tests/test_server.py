"""The backend server: ETA's WebSocket protocol, the Script Panel run queue, stopping, access rules.

Real servers on 127.0.0.1 (free ports) in background threads, real aiohttp WebSocket clients;
every wait is bounded. The protocol core is also tested without sockets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from conftest import need

aiohttp = need("aiohttp")

from hypothesis import given, settings, strategies as st  # noqa: E402

from etaflow.recipe import Recipe  # noqa: E402
from etaflow.server import protocol as P  # noqa: E402
from etaflow.server import serve  # noqa: E402
from etaflow.server.app import WEB_DIR, ServerThread  # noqa: E402
from etaflow.sim import simulate_file  # noqa: E402

from conftest import shared_file  # noqa: E402

RECIPE = "eta-reference/recipes/tests-Correlation.eta"
TOKEN = "test-token-0123456789abcdef"
WAIT = 30.0          # upper bound of any single wait (normal runs take well under a second)


# --- helpers ------------------------------------------------------------------------------------
def recipe_obj() -> dict:
    with open(shared_file(RECIPE), encoding="utf-8") as f:
        return json.load(f)


def with_panel(obj: dict, code: str, pid: str = "dpp_servertest", name: str = "server test",
               group: str = "HHT2") -> dict:
    """The recipe object plus a Script Panel, as ETA's GUI would send it."""
    obj = dict(obj)
    rows = json.loads(obj["eta_index_table"])
    rows = [r for r in rows if r["id"] != pid]
    rows.append({"id": pid, "name": name, "group": group, "info": "", "config": ""})
    obj["eta_index_table"] = json.dumps(rows)
    obj[pid] = code
    return obj


def with_file(obj: dict, path) -> dict:
    r = Recipe(obj)
    r.set_parameter("file", str(path))
    return r.to_json()


def call(method: str, *args) -> str:
    return json.dumps({"method": method, "args": list(args)})


async def recv(ws, timeout: float = WAIT) -> dict:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"unexpected frame {msg!r}"
    return json.loads(msg.data)


async def recv_until(ws, pred, timeout: float = WAIT) -> list[dict]:
    """Messages up to and including the first one that satisfies ``pred``."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; received {got}")
        try:
            m = await recv(ws, left)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out; received {got}") from None
        got.append(m)
        if pred(m):
            return got


def is_op(op, text=None):
    return lambda m: m.get("op") == op and (text is None or text in str(m.get("msg", "")))


def run(coro, timeout: float = 50.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def session_ws(url: str, **kw):
    s = aiohttp.ClientSession()
    try:
        ws = await s.ws_connect(url + "/ws", **kw)
    except BaseException:
        await s.close()
        raise
    return s, ws


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with ServerThread(host="127.0.0.1", port=0) as st_:
        yield st_.server


@pytest.fixture(scope="module")
def t2_file(tmp_path_factory):
    return simulate_file(tmp_path_factory.mktemp("srv") / "hbt.ptu", kind="hh-t2", duration_s=0.02)


RUN_CODE = """
import logging
r = eta.run({"timetagger1": eta.clips(file)}, group="HHT2")
logging.getLogger('etabackend.frontend').info("h3 total %d", int(r["h3"].sum()))
eta.send("h4 total " + str(int(r["h4"].sum())))
"""


# --- the protocol core, without sockets ----------------------------------------------------------
def test_protocol_parses_documented_methods_with_defaults():
    obj = with_panel(recipe_obj(), "pass")
    req = P.parse_request(call("process_eta", obj, "dpp_servertest"))
    assert req.method == "process_eta" and req.args == {"id": "dpp_servertest", "group": "main"}
    assert isinstance(req.recipe, Recipe)
    assert P.parse_request(json.dumps({"method": "recipe_update"})).args == {}
    assert P.parse_request(call("stop")).args == {"which": "running"}
    assert P.parse_request(call("stop", 3)).args == {"which": 3}
    # the recipe may come as its JSON text, never as a file name
    assert P.parse_request(call("compile_eta", json.dumps(obj))).recipe is not None
    with pytest.raises(P.RequestError, match="not JSON"):
        P.parse_request(call("compile_eta", "/etc/passwd"))


@pytest.mark.parametrize("frame,text", [
    ("{", "not JSON"),
    ("[1, 2]", "not an array"),
    (json.dumps({"method": "__init__", "args": []}), "unknown method '__init__'"),
    (json.dumps({"method": "shutdown"}), "unknown method 'shutdown'"),
    (json.dumps({"method": "show_bokeh", "args": [1]}), "unknown method"),
    (json.dumps({"method": 5}), '"method" must be a string'),
    (json.dumps({"method": "compile_eta", "args": []}), "takes 1 argument(s), got 0"),
    (json.dumps({"method": "compile_eta", "args": {"a": 1}}), '"args" must be an array'),
    (json.dumps({"method": "recipe_update", "args": [1]}), "takes 0 argument(s), got 1"),
    (json.dumps({"method": "compile_eta", "args": [5]}), "must be the recipe object"),
    (json.dumps({"method": "stop", "args": ["everything"]}), 'which must be "running"'),
    (json.dumps({"method": "stop", "args": [True]}), "must be str or int"),
    (json.dumps({"method": "recipe_update", "kwargs": {}}), "unexpected keys"),
])
def test_protocol_rejects_malformed_frames(frame, text):
    with pytest.raises(P.RequestError) as e:
        P.parse_request(frame)
    assert text in str(e.value)


def test_protocol_argument_types_and_panel_ids():
    obj = with_panel(recipe_obj(), "pass")
    with pytest.raises(P.RequestError, match="argument 'id' must be str, not a number"):
        P.parse_request(call("process_eta", obj, 5))
    with pytest.raises(P.RequestError, match="no Script Panel 'nope'.*dpp_servertest"):
        P.parse_request(call("process_eta", obj, "nope"))
    with pytest.raises(P.RequestError, match="never opens a file dialog"):
        P.parse_request(call("recipe_set_filename", obj, "var_x", "file"))
    with pytest.raises(Exception, match="eta_index_table"):      # a RecipeError
        P.parse_request(call("compile_eta", {"x": 1}))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4)
                              | st.dictionaries(st.sampled_from(["method", "args", "x"]), c,
                                                max_size=3),
                              max_leaves=10).map(json.dumps)))
def test_connection_never_raises(frame):
    """Any frame is either a request or exactly one documented err reply."""
    conn = P.Connection()
    conn.receive(frame)
    events, out = conn.events(), conn.to_send()
    assert len(events) + len(out) == 1
    for text in out:
        m = json.loads(text)
        assert m["op"] == "err" and m["error"] in ("RequestError", "RecipeError")


def test_table_is_etas_get_table_order():
    r = Recipe(with_panel(recipe_obj(), "pass"))
    rows = json.loads(P.table(r)["table"])
    kinds = ["var" if "var" in x["id"] else "dpp" if "dpp_" in x["id"] else "vi" for x in rows]
    assert kinds == sorted(kinds, key=["var", "dpp", "vi"].index)
    assert len(rows) == len(r.entries)


def test_loopback_and_tokens():
    for h in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "LOCALHOST"):
        assert P.is_loopback(h), h
    for h in ("0.0.0.0", "", "::", "192.168.1.5", "example.org", "localhost.example.org", None):
        assert not P.is_loopback(h), h
    assert P.presented_token({"token": "a"}, {}) == "a"
    assert P.presented_token({}, {"Authorization": "Bearer b "}) == "b"
    assert P.token_matches("abc", "abc") and not P.token_matches("abc", "abd")
    assert not P.token_matches("abc", None) and not P.token_matches("", "")


def test_slow_clients_lose_log_lines_not_state_changes():
    from etaflow.server.app import _Client
    c = _Client(ws=None, base_url="http://127.0.0.1:1", token=None, display_dir="/nonexistent")
    for i in range(P.MAX_BACKLOG + 10):
        c.put(P.log(f"line {i}"))
    c.put({"op": "finished"})
    c.put(P.err("still delivered"))
    assert len(c.outbox) == P.MAX_BACKLOG + 2 and c.dropped == 10
    assert json.loads(c.outbox[-2]) == {"op": "finished"}


# --- serve(): configuration refused before anything is bound ------------------------------------
def test_serve_refuses_non_loopback_without_token(monkeypatch, capsys):
    def no_bind(*a, **k):
        raise AssertionError("serve() bound a socket")
    monkeypatch.setattr(socket.socket, "bind", no_bind)
    monkeypatch.delenv("ETAFLOW_TOKEN", raising=False)
    monkeypatch.delenv("ETA_IP", raising=False)
    assert serve(host="0.0.0.0") == 2
    assert "requires an access token" in capsys.readouterr().err
    monkeypatch.setenv("ETA_IP", "0.0.0.0")
    assert serve() == 2
    monkeypatch.setenv("ETA_IP", "127.0.0.1")
    monkeypatch.setenv("ETA_PORT", "not-a-port")
    assert serve() == 2
    assert serve(host="127.0.0.1", port=70000) == 2


# --- WebSocket ---------------------------------------------------------------------------------
def test_compile_eta_answers_with_the_table(server):
    obj = recipe_obj()

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("compile_eta", obj))
            got = await recv_until(ws, is_op("table"))
            assert got[0] == {"op": "discard", "msg": ""}
            rows = json.loads(got[-1]["table"])
            assert {r["name"] for r in rows} >= {"file", "bins", "HH400", "plotly (HH400)"}
            # recipe_update re-sends the same table
            await ws.send_str(call("recipe_update"))
            again = await recv_until(ws, is_op("table"))
            assert again[-1]["table"] == got[-1]["table"]
    run(go())


def test_recipe_set_filename_sets_the_parameter(server, t2_file):
    obj = recipe_obj()

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("recipe_set_filename", obj, "var_templatejgmgopco", "file",
                                   str(t2_file)))
            got = await recv_until(ws, is_op("table"))
            rows = json.loads(got[-1]["table"])
            assert [r["config"] for r in rows if r["name"] == "file"] == [str(t2_file)]
    run(go())


def test_process_eta_streams_running_logs_finished(server, t2_file):
    obj = with_file(with_panel(recipe_obj(), RUN_CODE), t2_file)

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("process_eta", obj, "dpp_servertest", "HHT2"))
            got = await recv_until(ws, is_op("finished"))
            ops = [m["op"] for m in got]
            assert ops[0] == "discard" and "running" in ops and "err" not in ops, got
            i_run = ops.index("running")
            texts = [str(m.get("msg", "")) for m in got]
            i_h3 = [i for i, t in enumerate(texts) if "h3 total" in t]
            i_h4 = [i for i, t in enumerate(texts) if "h4 total" in t]
            assert len(i_h3) == 1 and len(i_h4) == 1, got
            assert i_run < i_h3[0] < i_h4[0] < len(got) - 1, got
            assert got[i_h3[0]]["op"] == "log" and int(texts[i_h3[0]].split()[-1]) > 0, got
            progress = [m for m in got if "percent" in m]
            assert progress and all(m["op"] == "log" for m in progress), got
            assert (await recv_until(ws, is_op("table")))[-1]["op"] == "table"
    run(go())


def test_two_requests_run_one_after_the_other(server, t2_file, tmp_path):
    flag = tmp_path / "go"           # A waits for it, so B is certainly queued behind A
    code = ('import os, time\neta.send("begin " + tag)\n'
            f'while tag == "A" and not os.path.exists({str(flag)!r}):\n    time.sleep(0.005)\n'
            + RUN_CODE + '\neta.send("end " + tag)\n')
    a = with_file(with_panel(recipe_obj(), "tag = 'A'\n" + code), t2_file)
    b = with_file(with_panel(recipe_obj(), "tag = 'B'\n" + code), t2_file)

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("process_eta", a, "dpp_servertest", "HHT2"))
            got = await recv_until(ws, lambda m: m.get("msg") == "begin A")
            await ws.send_str(call("process_eta", b, "dpp_servertest", "HHT2"))
            got += await recv_until(ws, lambda m: "job" in m)
            assert got[-1]["op"] == "log" and got[-1]["position"] == 1, got
            flag.write_text("")
            got += await recv_until(ws, is_op("log", "end B"))
            got += await recv_until(ws, is_op("finished"))
            msgs = [m.get("msg", "") for m in got]
            ops = [m["op"] for m in got]
            end_a, begin_b = msgs.index("end A"), msgs.index("begin B")
            first_finished = ops.index("finished")
            assert end_a < first_finished < begin_b, got
            # B's own "running" comes after A's "finished"
            assert "running" in ops[first_finished:begin_b], got
            assert ops.count("finished") == 2 and "err" not in ops, got
    run(go())


def test_a_file_chosen_during_a_run_is_not_reverted(server, t2_file, tmp_path):
    flag = tmp_path / "go"
    code = (f'import os, time\neta.send("waiting")\nwhile not os.path.exists({str(flag)!r}):\n'
            '    time.sleep(0.005)\n')
    obj = with_panel(recipe_obj(), code)

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("process_eta", obj, "dpp_servertest", "HHT2"))
            await recv_until(ws, lambda m: m.get("msg") == "waiting")
            await ws.send_str(call("recipe_set_filename", obj, "var_templatejgmgopco", "file",
                                   str(t2_file)))
            await recv_until(ws, is_op("table"))
            flag.write_text("")
            await recv_until(ws, is_op("finished"))
            await ws.send_str(call("recipe_update"))
            got = await recv_until(ws, is_op("table"))
            assert [m["op"] for m in got] == ["table"], got     # no stale table in between
            rows = json.loads(got[-1]["table"])
            assert [r["config"] for r in rows if r["name"] == "file"] == [str(t2_file)]
    run(go())


def test_stop_a_python_loop_then_the_queue_goes_on(server, t2_file):
    loop = with_panel(recipe_obj(), 'import time\neta.send("looping")\nwhile True:\n'
                                    '    time.sleep(0.01)\n')
    after = with_file(with_panel(recipe_obj(), RUN_CODE), t2_file)

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("process_eta", loop, "dpp_servertest", "HHT2"))
            await ws.send_str(call("process_eta", after, "dpp_servertest", "HHT2"))
            await recv_until(ws, lambda m: m.get("msg") == "looping")
            t0 = time.monotonic()
            await ws.send_str(call("stop"))
            got = await recv_until(ws, is_op("err", "stopped"), timeout=10)
            assert time.monotonic() - t0 < 5
            assert "finished" not in [m["op"] for m in got]
            assert not any("user-written" in m.get("msg", "") for m in got), got
            # the queued request runs next, to its end
            rest = await recv_until(ws, is_op("finished"))
            assert any("h4 total" in m.get("msg", "") for m in rest), rest
    run(go())


def test_stop_a_long_eta_run(server, t2_file):
    code = f"""
import time
def slow():
    for c in eta.clips({str(t2_file)!r}, read_events=100):
        time.sleep(0.02)
        yield c
eta.send("started")
eta.run({{"timetagger1": slow()}}, group="HHT2")
eta.send("ran to the end")
"""
    obj = with_panel(recipe_obj(), code)

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("process_eta", obj, "dpp_servertest", "HHT2"))
            await recv_until(ws, lambda m: m.get("msg") == "started")
            await asyncio.sleep(0.2)
            await ws.send_str(call("stop", "running"))
            got = await recv_until(ws, is_op("err", "stopped"), timeout=10)
            assert not any(m.get("msg") == "ran to the end" for m in got)
            assert got[-1]["error"] == "Stopped" and isinstance(got[-1]["job"], int)
            # still serving; nothing is running any more
            await ws.send_str(call("stop"))
            assert (await recv(ws))["msg"] == "No Script Panel is running."
            await ws.send_str(call("recipe_update"))
            assert (await recv_until(ws, is_op("table")))[-1]["op"] == "table"
    run(go())


def test_cancel_a_queued_request(server):
    loop = with_panel(recipe_obj(), 'import time\neta.send("looping")\nwhile True:\n'
                                    '    time.sleep(0.01)\n')
    never = with_panel(recipe_obj(), 'eta.send("must not run")')

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("process_eta", loop, "dpp_servertest", "HHT2"))
            await recv_until(ws, lambda m: m.get("msg") == "looping")
            await ws.send_str(call("process_eta", never, "dpp_servertest", "HHT2"))
            queued = await recv_until(ws, lambda m: "job" in m)
            await ws.send_str(call("stop", queued[-1]["job"]))
            got = await recv_until(ws, is_op("err", "cancelled"))
            await ws.send_str(call("stop", "all"))
            got += await recv_until(ws, is_op("err", "stopped"))
            await ws.send_str(call("stop", 99999))
            got += await recv_until(ws, is_op("err", "#99999"))
            assert not any(m.get("msg") == "must not run" for m in got)
    run(go())


def test_recipe_errors_carry_their_location(server):
    obj = with_panel(recipe_obj(), 'eta.send("must not run")')
    vi = json.loads(obj["vi_templatejfb2qshf"])
    vi["usercode"] = vi["usercode"].replace("HISTOGRAM(", "HISTOGRAM((", 1)
    obj["vi_templatejfb2qshf"] = json.dumps(vi)

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("compile_eta", obj))
            e = (await recv_until(ws, is_op("err")))[-1]
            assert e["error"] == "RecipeError" and e["vi"] == "Correlationfwd  (HH400)"
            assert e["line"] == 1 and e["column"] == 10 and "never closed" in e["message"]
            await ws.send_str(call("process_eta", obj, "dpp_servertest", "HHT2"))
            got = await recv_until(ws, lambda m: m.get("error") == "RecipeError")
            assert got[-1]["vi"] == "Correlationfwd  (HH400)" and got[-1]["line"] == 1
            assert not any(m.get("msg") == "must not run" for m in got)
            # a panel error is reported (by the panel runtime) and the server goes on
            bad = with_panel(recipe_obj(), "1/0")
            await ws.send_str(call("process_eta", bad, "dpp_servertest", "HHT2"))
            got = await recv_until(ws, is_op("err", "ZeroDivisionError"))
            bye = with_panel(recipe_obj(), "import sys\nsys.exit(3)")
            await ws.send_str(call("process_eta", bye, "dpp_servertest", "HHT2"))
            got = await recv_until(ws, is_op("err", "SystemExit"))
            await ws.send_str(call("recipe_update"))
            assert (await recv_until(ws, is_op("table")))[-1]["op"] == "table"
    run(go())


def test_malformed_messages_keep_the_connection(server):
    obj = recipe_obj()

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            for frame in ("{not json", json.dumps({"method": "__init__", "args": []}),
                          json.dumps({"method": "shutdown", "args": []}),
                          call("compile_eta"), call("compile_eta", obj, 1),
                          call("process_eta", obj, "no such panel"), "[]"):
                await ws.send_str(frame)
                m = await recv(ws)
                assert m["op"] == "err" and m["error"] == "RequestError", (frame, m)
            await ws.send_bytes(b"\xff\xfe")
            assert (await recv(ws))["op"] == "err"
            await ws.send_str(call("recipe_update"))
            assert (await recv(ws))["op"] == "table"
            assert not ws.closed
    run(go())


def test_frontend_logging_reaches_clients(server):
    import logging

    async def go():
        s, ws = await session_ws(server.url)
        async with s, ws:
            await ws.send_str(call("recipe_update"))      # a round trip: we are registered
            await recv_until(ws, is_op("table"))
            logging.getLogger("etabackend.frontend").info("hello from the backend")
            logging.getLogger("etaflow.frontend").warning("careful")
            got = await recv_until(ws, is_op("err", "careful"))
            assert {"op": "log", "msg": "hello from the backend"} in got
    run(go())


def test_display_becomes_a_served_dash_frame(server):
    need("matplotlib")
    code = ("from matplotlib.figure import Figure\nf = Figure()\nf.add_subplot().plot([1, 3, 2])\n"
            "eta.display(f)\n")
    obj = with_panel(recipe_obj(), code)

    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(server.url + "/ws") as ws:
                await ws.send_str(call("process_eta", obj, "dpp_servertest", "HHT2"))
                got = await recv_until(ws, is_op("finished"))
                dash = [m for m in got if m["op"] == "dash"]
                assert len(dash) == 1 and dash[0]["url-dash"].startswith(server.url + "/display/")
                async with s.get(dash[0]["url-dash"]) as r:
                    assert r.status == 200 and (await r.read())[:4] == b"\x89PNG"
                async with s.get(server.url + "/display/..%2Fpasswd") as r:
                    assert r.status == 404
    run(go())


# --- HTTP and access rules -----------------------------------------------------------------------
def test_http_routes_and_shutdown_refused_without_token(server):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url + "/", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/index.html"
            async with s.get(server.url + "/index.html") as r:
                import os
                assert r.status == (200 if os.path.isdir(WEB_DIR) else 404)
            async with s.get(server.url + "/shutdown") as r:
                assert r.status == 403
            # refused: a page of another site, and a non-loopback Host (DNS rebinding)
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(server.url + "/ws", headers={"Origin": "http://evil.example"})
            assert e.value.status == 403
            async with s.get(server.url + "/index.html", headers={"Host": "evil.example"}) as r:
                assert r.status == 403
            async with s.ws_connect(server.url + "/ws",
                                    headers={"Origin": "http://localhost:8080"}) as ws:
                await ws.send_str(call("recipe_update"))
                assert (await recv(ws))["op"] == "table"
    run(go())


def test_token_server_refuses_clients_without_it():
    with ServerThread(host="127.0.0.1", port=0, token=TOKEN) as st_:
        url = st_.server.url

        async def go():
            async with aiohttp.ClientSession() as s:
                for kw in ({}, {"params": {"token": "wrong"}},
                           {"headers": {"Authorization": "Bearer wrong"}}):
                    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                        await s.ws_connect(url + "/ws", **kw)
                    assert e.value.status == 403
                async with s.get(url + "/shutdown") as r:
                    assert r.status == 403
                for kw in ({"params": {"token": TOKEN}},
                           {"headers": {"Authorization": f"Bearer {TOKEN}"}}):
                    async with s.ws_connect(url + "/ws", **kw) as ws:
                        await ws.send_str(call("recipe_update"))
                        assert (await recv(ws)) == {"op": "table", "table": "[]"}
                # with the token, /shutdown stops the server
                async with s.get(url + "/shutdown", params={"token": TOKEN}) as r:
                    assert r.status == 200
        run(go())
        deadline = time.monotonic() + 10
        while st_.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not st_.is_alive()


def test_web_folder_is_served_with_a_placeholder_index(tmp_path, monkeypatch):
    from etaflow.server import app
    (tmp_path / "app.js").write_text("// gui")
    monkeypatch.setattr(app, "WEB_DIR", str(tmp_path))
    with ServerThread(host="127.0.0.1", port=0) as st_:
        url = st_.server.url

        async def go():
            async with aiohttp.ClientSession() as s:
                async with s.get(url + "/") as r:        # follows the redirect
                    assert r.status == 200 and "etaflow" in await r.text()
                async with s.get(url + "/app.js") as r:
                    assert r.status == 200 and await r.text() == "// gui"
                async with s.get(url + "/../etc/passwd") as r:
                    assert r.status in (403, 404)
                async with s.ws_connect(url + "/ws") as ws:
                    await ws.send_str(call("recipe_update"))
                    assert (await recv(ws))["op"] == "table"
        run(go())
