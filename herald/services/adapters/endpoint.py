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
    if resource is None:  # no route: a prober's paths make no spans
        return await handler(request)
    route = resource.canonical
    attributes = {"http.request.method": request.method, "http.route": route, "url.path": request.path}
    with tracer.start_as_current_span(
        f"{request.method} {route}",
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            response = await handler(request)
        except web.HTTPException as e:  # an answer raised (a click's redirect): an error only if the server's
            _answered(span, e.status)
            raise
        except Exception as e:
            span.record_exception(e)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(e).__name__))
            raise
        _answered(span, response.status)
        return response


def _answered(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))


async def callback_of(request: web.Request) -> Callback:
    """A provider's POST as its plug-in reads it."""
    return Callback(
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.read(),
    )
