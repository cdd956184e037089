"""A digest's collected items live in NATS, not in any process: sends before and after every herald binary is
SIGKILLed and restarted inside one window still arrive as one delivery listing all of them."""

import asyncio
import signal
import time
import uuid
from pathlib import Path

from tests.conftest import running_mesh
from tests.helpers.databases import default_backend
from tests.router.digest import comment, digest_template, inbox

WINDOW = 25


async def test_a_digest_collects_across_a_restart_of_every_binary(tmp_path: Path) -> None:
    async with running_mesh(tmp_path, default_backend()) as (mesh, herald):
        _, app = await herald.create_app(("inbox",))
        template = await digest_template(herald, WINDOW)
        user_id = f"u-{uuid.uuid4().hex[:8]}"
        started = time.time()
        sent = [await comment(herald, app, template, user_id, who) for who in ("ann", "bob", "cy")]
        for message_id in sent:
            await herald.wait_message(app, message_id, lambda m: len(m.deliveries) == 1)

        for binary in mesh.binaries.values():
            assert await binary.stop(signal.SIGKILL) == -signal.SIGKILL
        for binary in mesh.binaries.values():
            binary.start()
        await asyncio.gather(*(b.wait_healthy() for b in mesh.binaries.values()))
        sent += [await comment(herald, app, template, user_id, who) for who in ("di", "ed")]
        assert time.time() < started + WINDOW - 3, "everything restarted, and the last sends went, inside the window"

        async with asyncio.timeout(WINDOW + 60):
            while not await inbox(herald, app, user_id):
                await asyncio.sleep(0.2)
        await asyncio.sleep(3)
        [item] = await inbox(herald, app, user_id)
        assert item.title == "5 comments on plan"
        assert sorted(item.body.split(";")[:-1]) == ["ann", "bob", "cy", "di", "ed"]
        assert item.message_id == sent[0]
