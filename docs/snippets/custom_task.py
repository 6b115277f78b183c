"""A new kind of task: a file search that reports each match and its phase."""

import os
import tempfile

from traits.api import Event, List, Str

from offload.api import (
    AsyncioEventLoop,
    BaseFuture,
    BaseTask,
    ITaskSpecification,
    TraitsExecutor,
)


class SearchTask(BaseTask):
    """The worker side: plain attributes, so that it pickles for processes."""

    def __init__(self, folder: str, word: str) -> None:
        self.folder = folder
        self.word = word

    def run(self) -> int:
        self.send("phase", "listing")
        names = sorted(os.listdir(self.folder))
        self.send("phase", "searching")
        found = 0
        for name in names:
            if self.cancelled():
                return found  # the future is CANCELLING: this is discarded
            with open(os.path.join(self.folder, name)) as file:
                if self.word in file.read():
                    found += 1
                    self.send("match", name)  # -> SearchFuture._process_match
        return found  # becomes future.result


class SearchFuture(BaseFuture):
    """The main-thread side: one ``_process_<kind>`` per message kind."""

    #: The current phase of the search.
    phase = Str()

    #: The names of the matching files, in the order they were found.
    matches = List(Str)

    #: Fires with each new match.
    match_found = Event(Str)

    def _process_phase(self, phase: str) -> None:
        self.phase = phase

    def _process_match(self, name: str) -> None:
        self.matches.append(name)
        self.match_found = name


class Search(ITaskSpecification):
    """What the executor needs: the worker callable and the future."""

    def __init__(self, folder: str, word: str) -> None:
        self.folder = folder
        self.word = word

    def task(self) -> SearchTask:
        return SearchTask(self.folder, self.word)

    def future(self, cancel) -> SearchFuture:
        return SearchFuture(_cancel=cancel)


def submit_search(executor: TraitsExecutor, folder: str, word: str) -> SearchFuture:
    """Like submit_call: a function that builds the specification."""
    return executor.submit(Search(folder, word))


async def main(executor: TraitsExecutor, folder: str) -> None:
    future = submit_search(executor, folder, "needle")
    future.observe(lambda event: print("phase:", event.new), "phase")
    future.observe(lambda event: print("match:", event.new), "match_found")
    count = await future
    print("found", count, "files:", future.matches)


with tempfile.TemporaryDirectory() as folder:
    for i, text in enumerate(["hay", "needle", "hay", "a needle here"]):
        with open(os.path.join(folder, f"file{i}.txt"), "w") as file:
            file.write(text)
    event_loop = AsyncioEventLoop()
    executor = TraitsExecutor(event_loop=event_loop)
    try:
        event_loop.event_loop.run_until_complete(main(executor, folder))
    finally:
        executor.shutdown(timeout=10)
        event_loop.close()
