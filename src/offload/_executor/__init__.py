"""The executor: wires a context, an event loop and futures together.

This is the top layer; it may import every layer below it.
"""
