"""``python -m offload --version``: the versions a bug report needs.

Prints offload's version, then Python's and those of the packages offload
works with (Traits, Pyface, TraitsUI, the Qt bindings, wxPython, Dask,
cloudpickle), the start method worker processes use by default, and the
environment variables that choose a toolkit::

    offload       0.1.0
    Python        3.11.7 (CPython) on Linux-6.1.0-x86_64-with-glibc2.36
    traits        7.0.2
    ...

The versions come from the installed packages' metadata: nothing optional
is imported, so the report is quick, works where a toolkit is broken, and
creates no application.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys
from collections.abc import Sequence

import offload
from offload._backends.process.context import default_start_method

#: (label, import name, distribution names) of each package in the report,
#: in its order, the Qt bindings' row (below) coming in place of ``None``; a
#: package whose import name is not found is "not installed".
PACKAGES = [
    ("traits", "traits", ["traits"]),
    ("pyface", "pyface", ["pyface"]),
    ("traitsui", "traitsui", ["traitsui"]),
    None,
    ("wxPython", "wx", ["wxPython"]),
    ("dask", "dask", ["dask"]),
    ("distributed", "distributed", ["distributed"]),
    ("cloudpickle", "cloudpickle", ["cloudpickle"]),
]

#: The Qt bindings Pyface can use: (import name, distribution names).
#: Every one installed is listed, since ``QT_API`` (below) or Pyface's own
#: order picks among them.  PySide6's wheels are split; its Essentials
#: alone is enough.
QT_BINDINGS = [
    ("PySide6", ["PySide6-Essentials", "PySide6"]),
    ("PyQt5", ["PyQt5"]),
    ("PyQt6", ["PyQt6"]),
    ("PySide2", ["PySide2"]),
]

#: Environment variables that choose the toolkit (Pyface) and the binding.
ENVIRONMENT = ["ETS_TOOLKIT", "QT_API"]

NOT_INSTALLED = "not installed"

USAGE = """\
python -m offload --version
    print the versions of offload, Python and the packages it works with
    (for a bug report)
python -m offload.demo
    run a short tour of offload in the terminal
"""


def _installed_version(module: str, distributions: Sequence[str]) -> str | None:
    """Version of the package that ``import module`` would find, else None.

    ``find_spec`` of a top-level name locates the package without running
    it.  The version is its distribution's; a package found without
    metadata (copied in by hand) is reported as such.
    """
    if importlib.util.find_spec(module) is None:
        return None
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "(version unknown)"


def _qt_bindings() -> str:
    bindings = [
        f"{module} {version}"
        for module, distributions in QT_BINDINGS
        if (version := _installed_version(module, distributions)) is not None
    ]
    return ", ".join(bindings) or "none installed"


def version_report() -> list[tuple[str, str]]:
    """The (label, value) rows of ``python -m offload --version``."""
    python = (
        f"{platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.platform()}"
    )
    rows = [("offload", offload.__version__), ("Python", python)]
    for package in PACKAGES:
        if package is None:
            rows.append(("Qt binding", _qt_bindings()))
            continue
        label, module, distributions = package
        rows.append((label, _installed_version(module, distributions) or NOT_INSTALLED))
    rows.append(("start method", f"{default_start_method()} (MultiprocessingContext's default)"))
    for variable in ENVIRONMENT:
        rows.append((variable, os.environ.get(variable) or "not set"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m offload`` with ``argv`` (default: the command line's).

    Returns the exit status: 0, or 2 for an unknown argument (after
    argparse's message on stderr).
    """
    parser = argparse.ArgumentParser(
        prog="python -m offload",
        description="offload: background tasks for Traits applications and asyncio programs.",
        epilog="Without options: how to use this command and the demo.",
    )
    parser.add_argument(
        "--version", action="store_true",
        help="print the versions of offload, Python and the packages it works with",
    )
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    if not arguments.version:
        print(USAGE, end="")
        return 0
    rows = version_report()
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
