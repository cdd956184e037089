"""The gateway's ASGI application: the web console at / (console.py), and every procedure of herald.v1
(herald/services/gateway/procedures.py) as a Connect endpoint - the Connect protocol with JSON or binary messages,
and gRPC-Web - behind CORS."""

from collections.abc import Mapping
from typing import Any

import grpc
from connectrpc.server import ConnectASGIApplication

from herald.services.gateway import forwarding
from herald.services.gateway.codecs import codecs
from herald.services.gateway.console import Console
from herald.services.gateway.cors import App, Cors
from herald.services.gateway.observability import Observer
from herald.services.gateway.procedures import procedures


class HeraldApi(ConnectASGIApplication[None]):
    """All of herald.v1's services in one application: connectrpc finds each call's endpoint by its URL path."""

    @property
    def path(self) -> str:
        return "/"


def application(
    channels: Mapping[str, grpc.aio.Channel],
    cors_origins: frozenset[str],
    max_request_bytes: int,
    console: Mapping[str, Any],
) -> App:
    endpoints = forwarding.endpoints(list(procedures()), channels)
    api = HeraldApi(
        service=None,
        endpoints=lambda _: endpoints,
        interceptors=[Observer()],
        read_max_bytes=max_request_bytes,
        codecs=codecs(),
    )
    return Console(Cors(api, cors_origins), console)
