"""Pause a background generator, send it values, resume it (asyncio)."""

import asyncio
import time

from offload.api import AsyncioEventLoop, TraitsExecutor, submit_iteration


def gather_words(end):
    """Keep the words sent to it until ``end``; yield how many it has."""
    words = []
    while True:
        word = yield len(words)  # what send() queued, else None
        if word == end:
            return words
        if word is not None:
            words.append(word)
        time.sleep(0.01)  # stands for a step of real work


async def main() -> None:
    event_loop = AsyncioEventLoop(event_loop=asyncio.get_running_loop())
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        future = submit_iteration(executor, gather_words, "end")
        changes = []
        future.observe(lambda event: changes.append(event.new), "paused")

        print("pause:", future.pause())
        print("pause again:", future.pause())  # paused already: False
        for word in ["to", "be", None, "or", "end"]:
            future.send(word)  # queued in order; None is a value too
        print("resume:", future.resume())

        print("words:", await future)
        print("paused went:", changes)
        print("send when done:", future.send("late"))
    finally:
        executor.stop()  # no task left running: it stops at once
    print("executor:", executor.state)


asyncio.run(main())
