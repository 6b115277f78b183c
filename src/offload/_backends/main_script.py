"""The application's main module, as worker processes see it.

A worker process started by ``spawn`` or ``forkserver`` runs the main script
again before it takes work, as a module named ``__mp_main__`` that becomes
its ``__main__``; the script's ``if __name__ == "__main__":`` block does not
run there.  (``multiprocessing`` does this in every new process: it is how
plain ``pickle`` finds the script's functions by name in the worker.)  This
module answers what offload needs to know about it:

:func:`importing_main_module` / :func:`check_guarded`
    Is this process a new one, running the main script right now?  A
    script that makes a ``MultiprocessingContext`` then has no ``__main__``
    guard, and every worker would run the whole application (its GUI loop
    never returns): it is refused, naming the fix.
:func:`names_in_workers`
    The names the workers' copy of the script binds (outside its guard):
    functions and classes found under those names go by reference, the
    others by value (see ``process_pickling``).
:func:`spare_workers_a_missing_script`
    A script fed on standard input has no file that a new process could
    run: ``multiprocessing`` is told so, and its functions go by value.
"""

from __future__ import annotations

import ast
import importlib.machinery
import logging
import os
import sys
import tokenize

logger = logging.getLogger("offload.contexts.process")

#: The name ``multiprocessing`` runs the main script under in a new process.
MP_MAIN = "__mp_main__"


def importing_main_module() -> bool:
    """True while this process, a new one, runs the main script.

    While ``multiprocessing`` runs the script in a new process, the module
    being executed is registered as ``__mp_main__`` and ``__main__`` is still
    the process's own; once done, both name the script's module.  In the
    application's process, ``multiprocessing`` makes ``__mp_main__`` an
    alias of ``__main__``.
    """
    running = sys.modules.get(MP_MAIN)
    return (
        running is not None
        and running is not sys.modules.get("__main__")
        and getattr(running, "__name__", None) == MP_MAIN
    )


def check_guarded(what: str) -> None:
    """Refuse ``what`` (e.g. ``"MultiprocessingContext()"``) while this
    process runs the main script as a new worker."""
    if not importing_main_module():
        return
    script = getattr(sys.modules.get(MP_MAIN), "__file__", None) or "the main module"
    raise RuntimeError(
        f"{what} was called while a new worker process ran {script}: the "
        "script starts its work when imported, without an if __name__ == "
        "'__main__': guard, so every worker process would run the application "
        "again (and a GUI main loop never returns).  Put the code that starts "
        "the application (making contexts and executors, the main loop) "
        "under if __name__ == '__main__':"
    )


def main_script() -> str | None:
    """The file a new ``spawn`` or ``forkserver`` process runs, or None.

    Mirrors what ``multiprocessing`` does: a module run with ``python -m
    package.module`` is run again by name, a script by its path; a
    package's ``__main__``, an interactive session, ``python -c`` and a
    script without a file (standard input) are not run again.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return None
    path = getattr(main, "__file__", None)
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        if name == "__main__" or name.endswith(".__main__"):
            return None
    elif path is None or os.path.splitext(os.path.basename(path))[0] == "ipython":
        # multiprocessing does not run IPython's launcher script again.
        return None
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    return path


def names_in_workers() -> frozenset[str] | None:
    """Names the workers' copy of the main script binds; None if they run none.

    Worked out once per main module (the script is parsed, not run).
    """
    global _CACHED
    main = sys.modules.get("__main__")
    cached = _CACHED
    if cached is not None and cached[0] is main:
        return cached[1]
    path = main_script()
    names = None if path is None else bound_names(path)
    _CACHED = (main, names)
    return names


#: (main module, its names_in_workers()), once worked out.
_CACHED: tuple[object, frozenset[str] | None] | None = None


def bound_names(path: str) -> frozenset[str]:
    """Names the script at ``path`` binds at module level outside its
    ``if __name__ == "__main__":`` blocks, and not inside them.

    A name bound inside a guard too may stand for another object in the
    application than in a worker, so it is left out.  Empty when the file
    cannot be read or parsed.
    """
    try:
        with tokenize.open(path) as file:
            tree = ast.parse(file.read(), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return frozenset()
    outside: set[str] = set()
    inside: set[str] = set()
    _collect(tree.body, outside, inside)
    return frozenset(outside - inside)


def _collect(statements: list, names: set[str], guarded: set[str]) -> None:
    """Add to ``names`` what ``statements`` bind; a guard's block goes to
    ``guarded``, its ``else`` block (which workers run) to ``names``."""
    for node in statements:
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            _collect(node.body, guarded, guarded)
            _collect(node.orelse, names, guarded)
            continue
        _bind(node, names)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # their bodies bind names of their own scope
        for field in ("body", "orelse", "finalbody"):
            _collect(getattr(node, field, None) or [], names, guarded)
        for handler in getattr(node, "handlers", None) or []:
            if handler.name:
                names.add(handler.name)
            _collect(handler.body, names, guarded)
        for case in getattr(node, "cases", None) or []:
            for part in ast.walk(case.pattern):
                for attribute in ("name", "rest"):
                    value = getattr(part, attribute, None)
                    if isinstance(value, str):
                        names.add(value)
            _collect(case.body, names, guarded)


def _bind(node: ast.AST, names: set[str]) -> None:
    """Add the names that the statement ``node`` itself binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            _bind_target(target, names)
    elif isinstance(node, ast.AugAssign):
        _bind_target(node.target, names)
    elif isinstance(node, ast.AnnAssign):
        if node.value is not None:  # ``x: int`` alone binds nothing
            _bind_target(node.target, names)
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        _bind_target(node.target, names)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        for item in node.items:
            if item.optional_vars is not None:
                _bind_target(item.optional_vars, names)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            names.add(alias.asname or alias.name.partition(".")[0])
    elif isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if alias.name != "*":
                names.add(alias.asname or alias.name)


def _bind_target(target: ast.AST, names: set[str]) -> None:
    if isinstance(target, ast.Name):
        names.add(target.id)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _bind_target(element, names)
    elif isinstance(target, ast.Starred):
        _bind_target(target.value, names)


def _is_main_guard(test: ast.AST) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
    ):
        return False
    sides = [test.left, test.comparators[0]]
    return any(
        isinstance(side, ast.Name) and side.id == "__name__" for side in sides
    ) and any(
        isinstance(side, ast.Constant) and side.value == "__main__" for side in sides
    )


def spare_workers_a_missing_script() -> None:
    """Tell ``multiprocessing`` not to run a main script that has no file.

    A script fed on standard input (``python - < app.py``) has ``__file__``
    ``"<stdin>"``: every new ``spawn`` or ``forkserver`` process would try
    to run a file of that name, and die.  A ``__main__`` module whose spec
    is named ``__main__`` is one that ``multiprocessing`` never runs again
    (it stands for a package's ``__main__.py``), so the main module is given
    such a spec (``origin=None``: there is no file).  Python sets no spec
    for such a script; nothing else in the script changes (its ``__file__``
    stays).  Its functions then go to workers by value.  Call on the main
    thread, before starting workers.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return
    path = getattr(main, "__file__", None)
    if not isinstance(path, str) or os.path.isfile(path):
        return
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    logger.debug(
        "the main module's file %r does not exist (standard input?): worker "
        "processes will not run it, and its functions go to them by value", path,
    )
