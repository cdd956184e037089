"""`make bench`: how long the console takes to show the timeline of a message with 1,000 deliveries.

The mesh with herald-gateway (bench/mesh.py; SQLite unless HERALD_DATABASE_URL is set) sends one message to
--recipients webhook recipients (the sink, in its own process) and waits until every delivery is final. Then
Debian's chromium (Playwright), signed in to the console with the admin token, is asked --runs times for that
message: from the click on Show until the table holds every delivery (the console reads them a page of 500 at a
time through the gateway, and draws each with its history). Prints each run and the median."""

import argparse
import asyncio
import statistics
import time

from herald.v1 import common_pb2, status_service_pb2, status_service_pb2_grpc
from herald.v1 import message_service_pb2 as msg
from playwright.async_api import expect

from bench.alone import backend
from bench.mesh import ADMIN, running
from tests.helpers.browser import chromium

FINAL = {common_pb2.DELIVERY_STATE_SENT, common_pb2.DELIVERY_STATE_FAILED}


async def run(recipients: int, runs: int) -> list[float]:
    async with running(gateway=True) as bench:
        template_id = await bench.template(common_pb2.CATEGORY_NOTIFICATION)
        to = [msg.Recipient(addresses={"webhook": bench.sink.url("/timeline")}) for _ in range(recipients)]
        reply = await bench.messages.Send(
            msg.SendRequest(template_id=template_id, recipients=to, variables={"n": "1"}), metadata=bench.app
        )
        status = status_service_pb2_grpc.StatusServiceStub(bench.mesh.channel("feedback"))
        async with asyncio.timeout(300):
            while True:
                message = await status.GetMessage(
                    status_service_pb2.GetMessageRequest(message_id=reply.message_id), metadata=bench.app
                )
                counts = {c.state: c.count for c in message.delivery_state_counts}
                if sum(counts.get(state, 0) for state in FINAL) == recipients:
                    break
                await asyncio.sleep(0.5)
        timings = []
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{bench.mesh.gateway_url}/")
            await page.get_by_label("HERALD_ADMIN_TOKEN").fill(ADMIN)
            await page.get_by_role("button", name="Sign in with the token").click()
            rows = page.get_by_role("table", name="Deliveries").get_by_role("row")
            for _ in range(runs):
                await page.goto(f"{bench.mesh.gateway_url}/#/messages")
                await page.reload()
                await page.get_by_label("Message id").fill(reply.message_id)
                began = time.perf_counter()
                await page.get_by_role("button", name="Show").click()
                await expect(rows).to_have_count(recipients + 1, timeout=120_000)
                timings.append(time.perf_counter() - began)
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    timings = asyncio.run(run(args.recipients, args.runs))
    shown = ", ".join(f"{t:.2f}" for t in timings)
    print(
        f"The console shows a message's {args.recipients:,} deliveries ({backend()}): median "
        f"{statistics.median(timings):.2f} s from Show to the last row (runs: {shown} s)"
    )


if __name__ == "__main__":
    main()
