"""offload: background tasks for Traits applications and asyncio programs.

The public API lives in :mod:`offload.api` (and :mod:`offload.testing` for
test helpers); everything in ``_``-prefixed packages is private.

What every backend shares stands in layers, from the bottom up (imports
only point down):

``_event_loops``
    wake the main thread from any thread ("pingees") and test helpers.
``_routing``
    the router interface, the wire protocol a task speaks (started / sent /
    returned / raised) and the main-thread inbox that delivers in batches.
``_backends``
    where tasks run, one folder per backend, each with its context, pool,
    router, worker side and wire format: ``thread``, ``process``, ``dask``;
    beside them the context interface and what the process and Dask
    backends share (``remote.py``, ``main_script.py``).  ``offload.api``
    loads the process and Dask backends on first use.
``_futures``
    turn messages into trait changes: states, ``BaseFuture``, ``BaseTask``,
    the built-in task kinds, ``FutureGroup``.
``_executor``
    ``TraitsExecutor``, which wires a context, an event loop and futures.

``docs/architecture.rst`` has the diagram of what runs where.
"""

from __future__ import annotations

#: What ``__version__`` is when offload was never installed (imported from a
#: source tree on ``sys.path``): a valid PEP 440 version, below every release.
_UNKNOWN_VERSION = "0+unknown"


def __getattr__(name: str) -> str:
    """``offload.__version__``: the installed distribution's version.

    pyproject.toml holds the one written version and the installed metadata
    carries it here, so the two cannot disagree.  Looked up on first use, not
    at import: finding the metadata scans ``sys.path``, and most programs
    never ask.
    """
    if name != "__version__":
        raise AttributeError(f"module 'offload' has no attribute {name!r}")
    import importlib.metadata

    try:
        version = importlib.metadata.version("offload")
    except importlib.metadata.PackageNotFoundError:
        version = _UNKNOWN_VERSION
    globals()["__version__"] = version  # later look-ups find it directly
    return version
