"""The adapters' outside endpoint: every request to one of its routes is an HTTP server span, an error only when
the server failed - a click's redirect, raised as aiohttp raises redirects, is not one; a path no route has makes
no span."""

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from herald.services.adapters import endpoint


async def _fine(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("https://shop.example/")


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def test_each_request_is_a_server_span_and_only_a_failure_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(endpoint, "tracer", provider.get_tracer("test"))
    app = endpoint.endpoint(
        [web.post("/v1/fine/{account}", _fine), web.get("/v1/click/{token}", _redirect), web.get("/v1/bug", _broken)]
    )
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/v1/fine/acme")).status == 200
        assert (await client.get("/v1/click/t1", allow_redirects=False)).status == 302
        assert (await client.get("/v1/bug")).status == 500
        assert (await client.get("/v1/probe/../etc/passwd")).status == 404

    spans = {s.name: s for s in exported.get_finished_spans()}
    assert set(spans) == {"POST /v1/fine/{account}", "GET /v1/click/{token}", "GET /v1/bug"}, "no span for no route"
    assert all(s.kind == SpanKind.SERVER for s in spans.values())
    fine, click, bug = spans["POST /v1/fine/{account}"], spans["GET /v1/click/{token}"], spans["GET /v1/bug"]
    assert fine.attributes is not None and fine.attributes["http.response.status_code"] == 200
    assert fine.attributes["url.path"] == "/v1/fine/acme"
    assert click.attributes is not None and click.attributes["http.response.status_code"] == 302
    assert click.status.status_code == StatusCode.UNSET and not click.events, "a redirect is an answer"
    assert bug.status.status_code == StatusCode.ERROR and bug.events[0].name == "exception"
