"""States of a TraitsExecutor."""

from traits.api import Enum

RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"

#: Trait type for an executor's state.
ExecutorState = Enum(RUNNING, STOPPING, STOPPED)
