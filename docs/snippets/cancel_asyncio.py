"""Progress and cancellation in an asyncio script."""

import asyncio
import time

from offload.api import (
    AsyncioEventLoop,
    TaskCancelled,
    TraitsExecutor,
    submit_progress,
)


def count_slowly(limit: int, progress) -> str:
    """Runs in a worker thread: reports progress, stops when cancelled."""
    try:
        for i in range(limit):
            time.sleep(0.05)
            progress(i)  # raises TaskCancelled once cancel() was called
    except TaskCancelled:
        print("worker: cancelled, cleaning up")
        raise
    return "finished"


async def main(executor: TraitsExecutor) -> list:
    future = submit_progress(executor, count_slowly, 1000)
    states = [future.state]
    future.observe(lambda event: states.append(event.new), "state")

    def on_progress(event):
        # Main thread.  Ask the task to stop after the fifth report.
        if event.new == 4:
            print("main: cancel() returned", future.cancel())

    future.observe(on_progress, "progress")
    try:
        await future
    except asyncio.CancelledError:
        print("main: the future was cancelled")
    print("cancel() on a finished future returns", future.cancel())
    return states


event_loop = AsyncioEventLoop()
executor = TraitsExecutor(event_loop=event_loop)
try:
    states = event_loop.event_loop.run_until_complete(main(executor))
    print("states:", " -> ".join(states))
finally:
    executor.shutdown(timeout=10)
    event_loop.close()
