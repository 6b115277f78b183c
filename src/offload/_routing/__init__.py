"""Routing: carry messages from running tasks to their futures.

A message is ``(task_id, (kind, arg))``.  ``kind`` is either a user message
type (a ``str``, e.g. ``"progress"``, dispatched by the future to
``_process_<kind>``) or one of the control kinds of
:mod:`offload._routing.protocol` (ints, so they can never collide with a user
type).  Routers deliver messages on the main thread, in the order each task
sent them, many per wake-up of the event loop.

This layer imports only ``_event_loops``.
"""
