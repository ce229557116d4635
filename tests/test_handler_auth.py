"""Every taskweaver_lab endpoint refuses unauthenticated requests; the CI check script agrees."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
from jupyter_server.auth.decorator import authorized
from tornado import web

from taskweaver_lab.server.handlers import BaseHandler, routes

from server_support import make_notebook, server_config, started

pytest_plugins = ["pytest_jupyter.jupyter_server"]
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_handler_auth.py"
NO_AUTH = {"Authorization": ""}  # jp_fetch adds the token unless the header is given


@pytest.fixture
def jp_server_config(llm_server: Any) -> dict[str, Any]:
    return server_config(llm_server.base_url)


def test_the_check_script_passes_and_lists_every_route() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for pattern, handler in routes():
        assert handler.__name__ in result.stdout, pattern


def test_the_check_script_catches_a_missing_decorator() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import check_handler_auth as checker
    finally:
        sys.path.pop(0)

    class Leaky(BaseHandler):
        @authorized  # authorization without authentication is not enough
        def get(self) -> None:
            self.finish({})

        @web.authenticated
        @authorized
        def post(self) -> None:
            self.finish({})

    Leaky.__module__ = "taskweaver_lab.fake"
    assert checker.check(Leaky, "get") == (False, "NO AUTHENTICATION DECORATORS")
    assert checker.check(Leaky, "post") == (True, "web.authenticated + authorized")
    assert checker.check(Leaky, "delete") == (True, "not implemented (405)")
    assert checker.classify(["allow_unauthenticated"]) is None  # unauthenticated only with a kernel signature


def concrete(pattern: str) -> list[str]:
    """URL parts for a route pattern: each named group becomes a plausible id."""
    return re.sub(r"\(\?P<\w+>[^)]*\)", "abcdef123456", pattern).split("/")


async def test_every_endpoint_refuses_unauthenticated_requests(jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any,
                                                               jp_root_dir: Path) -> None:
    await started(jp_serverapp)
    make_notebook(jp_root_dir)
    checked = 0
    for pattern, handler in routes():
        parts = concrete(pattern)
        if issubclass(handler, web.RequestHandler) and "get" in vars(handler) and pattern.endswith("events") \
                and not pattern.startswith("taskweaver_lab/kernel"):
            with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
                await jp_ws_fetch(*parts, params={"path": "nb.ipynb"}, headers=NO_AUTH)
            assert refused.value.code == 403, pattern
            checked += 1
            continue
        for verb in ("get", "post"):
            if verb not in vars(handler):
                continue
            body = "{}" if verb == "post" else None
            response = await jp_fetch(*parts, method=verb.upper(), body=body, headers=NO_AUTH, raise_error=False,
                                      params={"path": "nb.ipynb"}, follow_redirects=False)
            assert response.code == 403, (pattern, verb, response.code, response.body)
            checked += 1
    assert checked == len(routes())  # one implemented verb per route today; new routes are covered automatically


# --- server input (issue 11, class 9) ---------------------------------------------------------------------
@pytest.mark.parametrize("timestamp", ["nan", "inf", "-inf", "1e10", " 1700000000", "１７００"])
def test_a_kernel_signature_with_a_timestamp_that_is_not_whole_seconds_is_refused(timestamp: str) -> None:
    from taskweaver_lab.kernel_auth import (SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, signature,
                                            verify)

    headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(b"k", timestamp, "POST", "/p", b"{}")}
    with pytest.raises(SignatureError, match="malformed"):
        verify(headers, b"k", "POST", ("/p",), b"{}")


async def test_bad_bodies_and_huge_messages_are_refused_at_the_door(
        jp_serverapp: Any, jp_fetch: Any, jp_root_dir: Path, llm_server: Any) -> None:
    import json

    from server_support import NS, as_json

    await started(jp_serverapp)
    notebook = make_notebook(jp_root_dir)
    before = notebook.read_bytes()

    async def turn(body: bytes) -> Any:
        return await jp_fetch(NS, "turns", method="POST", body=body, raise_error=False)

    not_utf8 = await turn(b'{"path": "nb.ipynb", "message": "\xff\xfe"}')
    too_big = await turn(json.dumps({"path": "nb.ipynb", "kernel_id": "k", "message": "x" * (3 * 1024 ** 2)}).encode())
    too_long = await turn(json.dumps({"path": "nb.ipynb", "kernel_id": "k", "message": "y" * 40_000}).encode())
    assert (not_utf8.code, too_big.code, too_long.code) == (400, 413, 413)
    assert "UTF-8" in as_json(not_utf8)["error"] and "MiB" in as_json(too_big)["error"]
    assert "max_message_chars" in as_json(too_long)["error"]
    assert notebook.read_bytes() == before and llm_server.requests == []
