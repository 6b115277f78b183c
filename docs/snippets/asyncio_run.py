"""offload inside asyncio.run(): gather several futures, then stop cleanly."""

import asyncio
import hashlib

from offload.api import AsyncioEventLoop, TaskFailed, TraitsExecutor, submit_call


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


async def wait_stopped(executor: TraitsExecutor) -> None:
    """Wait, without blocking the loop, until the executor has stopped."""
    if executor.stopped:
        return
    stopped = asyncio.get_running_loop().create_future()

    def on_stopped(event) -> None:
        if event.new and not stopped.done():
            stopped.set_result(None)

    executor.observe(on_stopped, "stopped")
    try:
        await stopped
    finally:
        executor.observe(on_stopped, "stopped", remove=True)


async def main() -> None:
    # Wrap the loop that asyncio.run() made; it stays asyncio.run()'s.
    event_loop = AsyncioEventLoop(event_loop=asyncio.get_running_loop())
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        blobs = [b"alpha", b"beta", b"gamma"]
        sums = await asyncio.gather(*(submit_call(executor, checksum, b) for b in blobs))
        print("checksums:", sums)

        outcomes = await asyncio.gather(
            submit_call(executor, checksum, b"ok"),
            submit_call(executor, checksum, "not bytes"),
            return_exceptions=True,
        )
        print("outcomes:", [type(o).__name__ for o in outcomes])
        assert isinstance(outcomes[1], TaskFailed)
    finally:
        executor.stop()  # shutdown() would block the running loop
        await wait_stopped(executor)
    print("executor:", executor.state)


asyncio.run(main())
