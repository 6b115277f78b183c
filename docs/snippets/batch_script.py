"""A batch in a script: steps tasks in a group, waited for as they end."""

from offload.api import (
    COMPLETED,
    AsyncioEventLoop,
    FutureGroup,
    TraitsExecutor,
    submit_steps,
)


def resize(name: str, tiles: int, reporter) -> str:
    reporter.step(f"loading {name}")
    if name.endswith("13.jpg"):
        raise ValueError(f"{name} is corrupt")
    for tile in range(1, tiles + 1):
        reporter.step(f"tile {tile} of {tiles}")
    reporter.stop("saved")
    return name.replace(".jpg", "_small.jpg")


event_loop = AsyncioEventLoop()
executor = TraitsExecutor(event_loop=event_loop)
names = [f"photo_{i}.jpg" for i in range(10, 15)]
group = FutureGroup(
    futures=[submit_steps(executor, 4 + 1, name, resize, name, 4) for name in names]
)
finished = []
for future in group.as_completed(timeout=30):  # runs the loop meanwhile
    if future.state == COMPLETED:
        finished.append(future.result)
    else:
        print(f"failed: {future.exception[1]}")
print("resized:", sorted(finished))
print(f"{group.done_count} of {group.total} done, {group.failed_count} failed,"
      f" fraction {group.fraction}")
executor.shutdown()
event_loop.close()
