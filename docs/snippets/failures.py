"""What a failed task leaves on its future, and how await reports it."""

import json

from offload.api import AsyncioEventLoop, TaskFailed, TraitsExecutor, submit_call


async def main(executor: TraitsExecutor) -> None:
    future = submit_call(executor, json.loads, "{not json")
    try:
        await future
    except TaskFailed as error:
        print("await raised TaskFailed; cause:", type(error.__cause__).__name__)

    print("state:", future.state)
    type_name, message, traceback_text = future.exception
    print("exception[0]:", type_name)
    print("exception[1]:", message)
    print("traceback ends with:", traceback_text.strip().splitlines()[-1])

    original = future.exception_object
    if isinstance(original, json.JSONDecodeError):
        print("exception_object: a JSONDecodeError at position", original.pos)

    try:
        future.result
    except AttributeError as error:
        print("result:", error)


event_loop = AsyncioEventLoop()
executor = TraitsExecutor(event_loop=event_loop)
try:
    event_loop.event_loop.run_until_complete(main(executor))
finally:
    executor.shutdown(timeout=10)
    event_loop.close()
