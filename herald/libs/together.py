"""Awaiting several steps at once, the one way herald does it."""

import asyncio
from collections.abc import Awaitable, Iterable


async def together(steps: Iterable[Awaitable[None]]) -> None:
    """Every step, concurrently. A single step (a Send's one message, a message's one recipient) is awaited as it
    is: gathering it would make it a task of its own, 9.4 us against 3.0 us in-process, and a turn of the event
    loop for nothing."""
    match list(steps):
        case []:
            return
        case [step]:
            await step
        case several:
            await asyncio.gather(*several)
