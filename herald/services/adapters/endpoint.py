"""The adapters' HTTP endpoint for what comes from outside: providers' delivery receipts and recipients' SMS
replies, readers' opens, clicks and unsubscribes. None of those callers sends trace context, so each request is an
HTTP server span of its own trace; what a request reports on links that span to the traces it concerns."""

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from opentelemetry import trace

from herald.libs import telemetry
from herald.services.adapters.channels.base import Callback

tracer = telemetry.tracer(__name__)

# A batch of reports is a few KiB; anything near this is not a provider's report.
MAX_BODY = 1024 * 1024


def endpoint(routes: Iterable[web.RouteDef]) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_server_span])
    app.add_routes(routes)
    return app


@web.middleware
async def _server_span(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"  # a prober's paths make no span names
    attributes = {"http.request.method": request.method, "http.route": route, "url.path": request.path}
    name = f"{request.method} {route}"
    with tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER, attributes=attributes) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


async def callback_of(request: web.Request) -> Callback:
    """A provider's POST as its plug-in reads it."""
    return Callback(
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.read(),
    )
