"""A solver that ignores cancellation, stopped by force and by a time limit."""

import asyncio
import time

from offload.api import (
    AsyncioEventLoop,
    MultiprocessingContext,
    TaskFailed,
    TaskTimedOut,
    TraitsExecutor,
    submit_call,
)


def stubborn_solver(seconds: float) -> str:
    """Never looks at a cancel flag: only killing its process stops it."""
    time.sleep(seconds)
    return "solved"


async def main() -> None:
    loop = AsyncioEventLoop(event_loop=asyncio.get_running_loop())
    with MultiprocessingContext(kill_grace=1.0) as context:
        executor = TraitsExecutor(context=context, event_loop=loop, max_workers=2)
        try:
            # A time limit, without touching the solver's own arguments.
            limited = submit_call(executor.options(timeout=0.5), stubborn_solver, 60)
            try:
                await limited
            except TaskFailed:
                pass
            error = limited.exception_object
            print("limited:", limited.state, isinstance(error, TaskTimedOut))
            print("message:", limited.exception[1])

            # Force-cancel: the worker (and what it started) is killed.
            stuck = submit_call(executor, stubborn_solver, 60)
            while stuck.state != "executing":
                await asyncio.sleep(0.01)
            stuck.cancel(force=True)
            try:
                await stuck
            except asyncio.CancelledError:
                pass
            print("stuck:", stuck.state)

            # The executor carries on, on a fresh worker.
            print("next:", await submit_call(executor, stubborn_solver, 0))
        finally:
            executor.shutdown(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
