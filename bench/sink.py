"""The benchmarks' webhook endpoint, in an OS process of its own (`python -m bench.sink --port P`).

In the benchmark's own event loop the sink would take CPU from the callers it times, and its cost would hide in
theirs; here it is one more process whose CPU is measured like the binaries'. It answers every POST with 204,
counts POSTs per path, and notes the wall-clock time (time.time(), comparable across processes) each POST to a
path and each numbered body ({"n": ...}) arrived. The benchmark asks over HTTP:
- GET /stats: {"counts": {path: POSTs}, "last": {path: arrival time of its latest POST}};
- POST /arrivals with a JSON list of numbers: {number: arrival time} for those that arrived.
"""

import argparse
import json
import time

import uvloop
from aiohttp import web


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last: dict[str, float] = {}
        self.arrivals: dict[str, float] = {}

    async def hit(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        self.arrivals[json.loads(body)["n"]] = self.last[request.path] = arrived
        self.counts[request.path] = self.counts.get(request.path, 0) + 1
        return web.Response(status=204)

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"counts": self.counts, "last": self.last})

    async def arrived(self, request: web.Request) -> web.Response:
        numbers: list[str] = await request.json()
        return web.json_response({n: self.arrivals[n] for n in numbers if n in self.arrivals})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    counter = Counter()
    app = web.Application()
    app.router.add_get("/stats", counter.stats)
    app.router.add_post("/arrivals", counter.arrived)  # before the catch-all below
    app.router.add_post("/{path}", counter.hit)
    # uvloop, as the binaries run: the sink should cost what a lean HTTP endpoint costs, not more.
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
