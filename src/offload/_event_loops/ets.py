"""ETSEventLoop: the event loop of the GUI toolkit that Pyface would choose.

Choosing, the way Pyface does (``pyface.base_toolkit.find_toolkit``):

1. the toolkit named by ``ETSConfig.toolkit``, that is the one an
   application set, or else the ``ETS_TOOLKIT`` environment variable
   (``"qt"``, ``"qt4"``, ``"wx"``; a suffix such as ``"qt.celiagg"`` is
   ignored);
2. otherwise the first toolkit that imports, Qt before wx, then the
   third-party loops in name order.

A toolkit name maps to an event loop: ``qt`` and ``wx`` are built in; any
other name is looked up in the entry-point group ``offload.event_loops``,
whose entries name an :class:`~offload.api.IEventLoop` class (or a factory
taking no arguments), e.g. in a plug-in's ``pyproject.toml``::

    [project.entry-points."offload.event_loops"]
    mytoolkit = "my_package.loop:MyEventLoop"

This module imports no toolkit itself; the chosen loop's module does.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

from traits.etsconfig.api import ETSConfig

from offload._event_loops.interface import IEventLoop, IEventLoopHelper, IPingee

#: The entry-point group third-party event loops register under.
ENTRY_POINT_GROUP = "offload.event_loops"

#: Built-in toolkits: name -> (module, class), in Pyface's order of preference.
_BUILTIN: dict[str, tuple[str, str]] = {
    "qt": ("offload._event_loops.qt", "QtEventLoop"),
    "wx": ("offload._event_loops.wx", "WxEventLoop"),
}

#: Other names Pyface accepts for a built-in toolkit.
_ALIASES = {"qt4": "qt", "qt5": "qt", "qt6": "qt"}

#: How to install each built-in toolkit, for when even its module cannot be
#: imported (the modules' own ImportErrors already say it).
_INSTALL_HINTS = {
    "qt": "install Qt with pip install 'offload[pyside6]' (or 'offload[pyqt5]')",
    "wx": (
        "install wxPython (on Debian/Ubuntu: apt-get install python3-wxgtk4.0, "
        "in a venv made with --system-site-packages) and pip install "
        "'offload[wx]'"
    ),
}

#: The end of every "nothing found" message.
_NO_GUI_HINT = (
    "or pass event_loop=AsyncioEventLoop() to TraitsExecutor for a program "
    "without a GUI"
)


class ETSEventLoop(IEventLoop):
    """The event loop of the GUI toolkit chosen the Pyface way.

    :class:`~offload.api.TraitsExecutor` uses it when given no
    ``event_loop``.  The toolkit is chosen when this object is made, so a
    missing toolkit is reported at once: the one named by
    ``ETSConfig.toolkit`` (what the application set, else the
    ``ETS_TOOLKIT`` environment variable), otherwise the first that imports,
    Qt, then wx, then the loops registered under the entry-point group
    ``offload.event_loops``.

    Parameters
    ----------
    toolkit : str, optional
        Name of the toolkit to use (``"qt"``, ``"wx"`` or an entry-point
        name) instead of asking ``ETSConfig`` / ``ETS_TOOLKIT``.

    Raises
    ------
    RuntimeError
        If the chosen toolkit, or any toolkit at all, cannot be imported; the
        message says what to install.

    Notes
    -----
    Make it on the main thread.  Everything is delegated to
    :attr:`toolkit_event_loop`.
    """

    def __init__(self, toolkit: str | None = None) -> None:
        self._toolkit_event_loop = find_event_loop(toolkit)

    @property
    def toolkit_event_loop(self) -> IEventLoop:
        """The toolkit's own event loop (e.g. a ``QtEventLoop``)."""
        return self._toolkit_event_loop

    def pingee(self, on_ping: Callable[[], None]) -> IPingee:
        return self._toolkit_event_loop.pingee(on_ping)

    def event_loop_helper(self) -> IEventLoopHelper:
        return self._toolkit_event_loop.event_loop_helper()

    def __repr__(self) -> str:
        return f"ETSEventLoop({self._toolkit_event_loop!r})"


def find_event_loop(toolkit: str | None = None) -> IEventLoop:
    """Return a new event loop for ``toolkit``, or for Pyface's choice.

    When nothing names a toolkit, the first one that loads is chosen and
    recorded in ``ETSConfig.toolkit``, as Pyface does, so that the windows
    TraitsUI opens afterwards use the same toolkit as the executor.

    Parameters
    ----------
    toolkit : str, optional
        Toolkit name; default ``ETSConfig.toolkit`` (``ETS_TOOLKIT``).

    Raises
    ------
    RuntimeError
        With the fix in the message, when nothing suitable imports.
    """
    if toolkit is not None:
        source = f"ETSEventLoop(toolkit={toolkit!r})"
        requested = toolkit
    else:
        source = "ETS_TOOLKIT / ETSConfig.toolkit"
        requested = ETSConfig.toolkit
    name = _canonical(requested)
    if name:
        return _load(name, source)
    failures = []
    third_party = sorted(n for n in _entry_points() if n not in _BUILTIN)
    for candidate in [*_BUILTIN, *third_party]:
        try:
            event_loop = _factory(candidate)()
        except ImportError as exc:
            failures.append(f"{candidate}: {_with_hint(candidate, exc)}")
            continue
        if not ETSConfig.toolkit:
            ETSConfig.toolkit = candidate
        return event_loop
    raise RuntimeError(
        "no GUI toolkit found for offload's ETSEventLoop ("
        + "; ".join(failures or ["nothing to try"])
        + "). Install one, e.g. pip install 'offload[pyside6]', "
        + _NO_GUI_HINT
    )


def _canonical(name: str) -> str:
    """``"qt4.celiagg"`` -> ``"qt"``: drop the suffix, map Pyface's aliases."""
    base = name.split(".")[0].strip().lower()
    return _ALIASES.get(base, base)


def _with_hint(name: str, exc: ImportError) -> str:
    """The error's message, with how to install ``name`` if it lacks it."""
    message = str(exc)
    if "pip install" in message or "apt-get install" in message:
        return message
    hint = _INSTALL_HINTS.get(name, f"install the package that provides {name!r}")
    return f"{message}; {hint}"


def _load(name: str, source: str) -> IEventLoop:
    if name == "null":
        raise RuntimeError(
            f"the toolkit chosen by {source} is 'null', which has no event "
            "loop; choose 'qt' or 'wx', " + _NO_GUI_HINT
        )
    try:
        factory = _factory(name)
    except KeyError:
        known = sorted({*_BUILTIN, *_entry_points()})
        raise RuntimeError(
            f"the toolkit {name!r} chosen by {source} has no offload event "
            f"loop; known toolkits: {', '.join(known)}. A third-party loop "
            f"registers under the entry-point group {ENTRY_POINT_GROUP!r}"
        ) from None
    except ImportError as exc:
        raise _unusable(name, source, exc) from exc
    try:
        return factory()
    except ImportError as exc:
        # A loop that imports its toolkit only when made.
        raise _unusable(name, source, exc) from exc


def _unusable(name: str, source: str, exc: ImportError) -> RuntimeError:
    return RuntimeError(
        f"the toolkit {name!r} chosen by {source} cannot be used: {_with_hint(name, exc)}"
    )


def _factory(name: str) -> Callable[[], IEventLoop]:
    """Import and return the event loop class for ``name``.

    Raises KeyError for an unknown name, ImportError when it does not import.
    """
    if name in _BUILTIN:
        module_name, class_name = _BUILTIN[name]
        return getattr(importlib.import_module(module_name), class_name)
    entry_point = _entry_points()[name]
    try:
        factory: Any = entry_point.load()
    except ImportError:
        raise
    except Exception as exc:
        # A broken plug-in must not look like a missing toolkit.
        raise RuntimeError(
            f"the offload event loop entry point {entry_point.value!r} "
            f"(group {ENTRY_POINT_GROUP!r}, name {name!r}) failed to load: {exc}"
        ) from exc
    return factory


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Third-party event loops, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
