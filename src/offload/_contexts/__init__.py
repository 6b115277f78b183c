"""Contexts: matching concurrency parts for one kind of worker.

A context makes worker pools, cancel flags and message routers that work
together: threads (``thread_context``), processes (``process_context``) or
Dask (``dask_context``).  This layer imports ``_routing`` and
``_event_loops``; process and Dask contexts are imported only when asked for.
"""
