"""offload: background tasks for Traits applications and asyncio programs.

The public API lives in :mod:`offload.api` (and :mod:`offload.testing` for
test helpers); everything in ``_``-prefixed packages is private.

Layers, from the bottom up (imports only point down):

``_event_loops``
    wake the main thread from any thread ("pingees") and test helpers.
``_routing``
    carry opaque messages from tasks to the main thread, in batches, and the
    wire protocol a task speaks (started / sent / returned / raised).
``_contexts``
    matching concurrency parts (pools, cancel flags, routers) for threads,
    processes and Dask.
``_futures``
    turn messages into trait changes: states, ``BaseFuture``, ``BaseTask``
    and the three built-in task kinds.
``_executor``
    ``TraitsExecutor``, which wires a context, an event loop and futures.
"""

__version__ = "0.1.0.dev0"
