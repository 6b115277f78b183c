"""A custom task type, importable by worker processes."""

from __future__ import annotations

from traits.api import List

from offload.api import BaseFuture, BaseTask, ITaskSpecification


class FizzBuzzFuture(BaseFuture):
    fizz = List()
    buzz = List()
    fizz_buzz = List()

    def _process_fizz(self, n):
        self.fizz.append(n)

    def _process_buzz(self, n):
        self.buzz.append(n)

    def _process_fizz_buzz(self, n):
        self.fizz_buzz.append(n)


class FizzBuzzTask(BaseTask):
    def __init__(self, limit):
        self.limit = limit

    def run(self):
        for n in range(1, self.limit + 1):
            if self.cancelled():
                return None
            if n % 15 == 0:
                self.send("fizz_buzz", n)
            elif n % 3 == 0:
                self.send("fizz", n)
            elif n % 5 == 0:
                self.send("buzz", n)
        return self.limit


class FizzBuzzSpec(ITaskSpecification):
    def __init__(self, limit):
        self.limit = limit

    def task(self):
        return FizzBuzzTask(self.limit)

    def future(self, cancel):
        return FizzBuzzFuture(_cancel=cancel)


class UnhandledTask(BaseTask):
    def run(self):
        self.send("nobody_listens", 1)
        return "end"


class Unhandled(ITaskSpecification):
    def task(self):
        return UnhandledTask()

    def future(self, cancel):
        return FizzBuzzFuture(_cancel=cancel)
