"""The web console at / (web/console, built by `make web` into this package's console/ directory): its page, its
two assets and its configuration, for GET and HEAD; every other request goes on to the API. The page may load only
what the gateway serves and talk only to the gateway and the company's identity provider (its Content Security
Policy), so no asset comes from elsewhere and nothing injected into a response can call out."""

import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from herald.services.gateway.cors import App, Receive, Scope, Send

DIRECTORY = Path(__file__).with_name("console")
ASSETS = ("console.js", "console.css")
NOT_BUILT = b"The console is not built here: run `make web` (the image builds it)."


class Console:
    def __init__(self, api: App, config: Mapping[str, Any], directory: Path = DIRECTORY) -> None:
        self._api = api
        self._config = json.dumps(config).encode()
        self._directory = directory
        # Each file as first read: the build does not change under a running gateway.
        self._files: dict[str, bytes] = {}
        issuer = (config.get("oidc") or {}).get("issuer", "")
        identity = f"{urlsplit(issuer).scheme}://{urlsplit(issuer).netloc}" if issuer else ""
        self._policy = (
            f"default-src 'self'; connect-src 'self' {identity}; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self._api(scope, receive, send)
            return
        path = scope["path"]
        if path == "/console/config.json":
            await self._answer(send, scope, 200, "application/json", self._config)
        elif path == "/" or path == "/index.html":
            await self._file(send, scope, "index.html")
        elif path.startswith("/assets/") and path.removeprefix("/assets/") in ASSETS:
            await self._file(send, scope, path.removeprefix("/assets/"))
        else:
            await self._api(scope, receive, send)

    async def _file(self, send: Send, scope: Scope, name: str) -> None:
        body = self._files.get(name)
        if body is None:
            try:
                body = self._files[name] = (self._directory / name).read_bytes()
            except FileNotFoundError:
                await self._answer(send, scope, 503, "text/plain; charset=utf-8", NOT_BUILT)
                return
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        await self._answer(send, scope, 200, f"{kind}; charset=utf-8" if kind.startswith("text/") else kind, body)

    async def _answer(self, send: Send, scope: Scope, status: int, kind: str, body: bytes) -> None:
        headers = [
            (b"content-type", kind.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-cache"),
            (b"content-security-policy", self._policy),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
