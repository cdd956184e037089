"""`make bench`: what an operator's signed-in call costs herald-intake beside an app's.

The same RPC, GetTemplate (which an app's key and an operator's token may both call, and which reads one row), is
called --calls times by --callers concurrent callers: with an app's API key; with one operator's JWT from an
OpenID Connect provider on loopback (tests/helpers/oidc_provider.py: RS256, the provider's keys fetched once and
cached), as a console or heraldctl calls; and with a new JWT on every call, so each is verified (herald remembers
a verified token for a minute). Intake runs alone with its nats-server (SQLite unless HERALD_DATABASE_URL is
set); its CPU milliseconds per call are read from /proc before and after each phase. Each of the --runs starts
afresh; the median of each figure is printed as markdown."""

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import grpc
from herald.v1 import admin_service_pb2 as admin
from herald.v1 import admin_service_pb2_grpc, common_pb2

from bench.alone import alone, backend, cpu_seconds
from bench.mesh import ADMIN
from herald.libs.roles import OPERATOR
from tests.helpers.oidc_provider import AUDIENCE, OidcProvider

Figures = dict[str, float]
WARM_UP = 200


async def _phase(call: Callable[[str], Awaitable[object]], tokens: list[str], callers: int, pid: int) -> Figures:
    """`call` with each of `tokens` as its credential, the first WARM_UP unmeasured."""
    remaining = iter(tokens[WARM_UP:])

    async def caller() -> None:
        for token in remaining:
            await call(token)

    await asyncio.gather(*(call(token) for token in tokens[:WARM_UP]))
    calls = len(tokens) - WARM_UP
    cpu, began = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - began
    return {"calls/s": calls / elapsed, "intake CPU ms/call": (cpu_seconds(pid) - cpu) * 1000 / calls}


async def run(calls: int, callers: int) -> dict[str, Figures]:
    provider = OidcProvider()
    await provider.start()
    try:
        env = {"HERALD_OIDC_ISSUER": provider.issuer, "HERALD_OIDC_AUDIENCE": AUDIENCE}
        async with alone("intake", env) as stage, grpc.aio.insecure_channel(stage.binary.addr) as channel:
            assert stage.binary.proc is not None
            stub = admin_service_pb2_grpc.AdminServiceStub(channel)
            operator = (("authorization", f"Bearer {ADMIN}"),)
            app = await stub.CreateApp(admin.CreateAppRequest(name="bench"), metadata=operator)
            template = admin.Template(
                template_id=f"bench-{secrets.token_hex(4)}",
                category=common_pb2.CATEGORY_NOTIFICATION,
                contents=[common_pb2.ChannelContent(channel="webhook", body='{"n": "{{ n }}"}')],
            )
            await stub.CreateTemplate(admin.CreateTemplateRequest(template=template), metadata=operator)
            request = admin.GetTemplateRequest(template_id=template.template_id)

            async def get_template(token: str) -> None:
                await stub.GetTemplate(request, metadata=(("authorization", f"Bearer {token}"),))

            expiry = int(time.time()) + 3600
            one_token = provider.token([OPERATOR], exp=expiry)
            credentials = {
                "API key": [app.api_key] * (WARM_UP + calls),
                "an operator's JWT (RS256), the same on every call": [one_token] * (WARM_UP + calls),
                "a new operator's JWT on every call (each verified)": [
                    provider.token([OPERATOR], subject=f"operator-{n}", exp=expiry) for n in range(WARM_UP + calls)
                ],
            }
            return {
                name: await _phase(get_template, tokens, callers, stage.binary.proc.pid)
                for name, tokens in credentials.items()
            }
    finally:
        await provider.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [asyncio.run(run(args.calls, args.callers)) for _ in range(args.runs)]
    print(
        f"GetTemplate on herald-intake, {args.calls:,} calls from {args.callers} callers, {backend()}, medians of "
        f"{args.runs}:\n\n| credential | calls/s | intake CPU ms/call |\n|---|---:|---:|"
    )
    for name in runs[0]:
        rate = statistics.median(r[name]["calls/s"] for r in runs)
        cpu = statistics.median(r[name]["intake CPU ms/call"] for r in runs)
        print(f"| {name} | {rate:,.0f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
