"""Event loops: how the executor is woken on the main thread.

This layer imports nothing else from offload.  Toolkit-specific loops (Qt,
wx) live in their own modules and import their toolkit at the top; nothing
imports them until a user asks for them.
"""
