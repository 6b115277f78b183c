"""A first background call in an asyncio script."""

import time

from offload.api import AsyncioEventLoop, TraitsExecutor, submit_call


def slow_square(n: int) -> int:
    time.sleep(0.5)  # stands for real work: I/O, a computation...
    return n * n


async def main(executor: TraitsExecutor) -> None:
    future = submit_call(executor, slow_square, 12)
    future.observe(lambda event: print("state:", event.new), "state")
    result = await future  # the event loop keeps running meanwhile
    print("result:", result, future.result)


event_loop = AsyncioEventLoop()  # makes a new asyncio loop, and owns it
executor = TraitsExecutor(event_loop=event_loop)
try:
    event_loop.event_loop.run_until_complete(main(executor))
finally:
    executor.shutdown(timeout=10)
    event_loop.close()
