"""A script that shuts its executor down, and stops, once its work is done."""

from offload.api import AsyncioEventLoop, TraitsExecutor, submit_call


def main() -> None:
    event_loop = AsyncioEventLoop()
    executor = TraitsExecutor(event_loop=event_loop)
    future = submit_call(executor, pow, 2, 10)

    def finish(event):
        # This task no longer counts as running: shutdown() returns.
        executor.shutdown(timeout=10.0)
        print("result:", future.result)
        print("executor:", executor.state)
        event_loop.event_loop.stop()

    future.observe(finish, "done")
    event_loop.event_loop.run_forever()
    event_loop.close()


if __name__ == "__main__":
    main()
