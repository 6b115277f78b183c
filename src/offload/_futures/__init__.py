"""Futures: turn a task's messages into trait changes on the main thread.

This layer imports ``_routing.protocol`` (the message kinds) and nothing
above it.
"""
