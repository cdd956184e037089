"""An in-test OTLP/gRPC trace receiver: what Jaeger's collector would get, kept in memory."""

import asyncio
import secrets

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        # (trace id hex, service.name, span name)
        self.spans: list[tuple[str, str, str]] = []
        # (service.name, the span as exported), for what a span carries: kind, attributes, status.
        self.exported: list[tuple[str, trace_pb2.Span]] = []
        self._server = grpc.aio.server()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(None)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = attributes.get("service.name", "")
            for scope in resource_spans.scope_spans:
                self.spans.extend((span.trace_id.hex(), service, span.name) for span in scope.spans)
                self.exported.extend((service, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def services_in(self, trace_id: str) -> set[str]:
        return {service for t, service, _ in self.spans if t == trace_id}

    async def wait_for_services(self, trace_id: str, services: set[str], timeout: float = 30) -> set[str]:
        async with asyncio.timeout(timeout):
            while not services <= self.services_in(trace_id):
                await asyncio.sleep(0.1)
        return self.services_in(trace_id)

    async def wait_for_span(self, trace_id: str, name: str, timeout: float = 30) -> None:
        """Each process exports its spans in batches of its own: one span of a service says nothing of the rest."""
        async with asyncio.timeout(timeout):
            while not any(t == trace_id and n == name for t, _, n in self.spans):
                await asyncio.sleep(0.1)


def sampled_trace(trace_id: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata: a caller's traceparent asking for the trace to be recorded."""
    return (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)
