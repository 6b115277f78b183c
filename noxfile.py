"""Test sessions: ``nox`` runs them all (lint, types, tests on every Python, docs).

The core suite runs on Python 3.10-3.13; the full matrix (Qt offscreen,
processes, Dask, the examples) runs on 3.11, the version the GUI stack is
pinned for; the wx loop runs on Debian's wxPython under Xvfb (``wx``).
"""

from __future__ import annotations

import glob
import os
import shutil
import time

import nox

#: The default run.  ``tests-3.11`` is left out: ``full`` runs the same tests
#: (and more) on 3.11; ``nox -s tests-3.11`` still runs it alone.
nox.options.sessions = [
    "lint", "typecheck", "tests-3.10", "tests-3.12", "tests-3.13", "full", "wx", "docs",
]
nox.options.reuse_existing_virtualenvs = True
#: uv makes the venvs and installs into them (``nox[uv]``, as the README's
#: command installs it): a quarter of pip's time on a fresh machine, where
#: every wheel is downloaded.  Without uv, nox falls back to virtualenv.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

CORE_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
FULL_PYTHON = "3.11"

#: ``--durations``: the slowest tests, in CI's own log, for its time budget.
PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider", "--durations=15"]

#: pytest-xdist: two test processes.  Most tests wait (for workers, loops,
#: subprocesses), so two share 2 cores well: the core suite takes 60-100 s
#: instead of 115-135 s.  The wx session stays in one process (its Xvfb
#: display and its first application, see GUI_FIRST).
IN_PARALLEL = ["-n", "2"]

#: The GUI-loop tests first: the first GUI application a process makes opens
#: descriptors it keeps until exit, and the suite's leak check must see that
#: happen in the one test that expects it.  That matters for wx, under Xvfb
#: (an X connection); in ``full``, on two workers, the second worker's first
#: Qt test makes its application, and offscreen Qt's keeps only an eventfd,
#: which the leak check lets the test that made it keep.
GUI_FIRST = [
    "tests/test_event_loops_gui.py",
    *sorted(
        path for path in glob.glob("tests/test_*_gui.py")
        if path != "tests/test_event_loops_gui.py"
    ),
    *sorted(path for path in glob.glob("tests/test_*.py") if not path.endswith("_gui.py")),
]

#: wxPython has no Linux wheel on PyPI: the wx session uses Debian's
#: ``python3-wxgtk4.0``, which lives in the system Python's site-packages
#: (``.ci/run`` installs it, with Xvfb).
SYSTEM_PYTHON = "/usr/bin/python3"

#: What the wx session runs: the GUI-loop module whole (its Qt cases skip),
#: then the nested-loop patterns, the shared behaviour suites, the users'
#: patterns and the examples on the wx loop.
WX_TESTS = [
    "tests/test_event_loops_gui.py", "tests/test_user_patterns_gui.py",
    "tests/test_call.py", "tests/test_iteration.py", "tests/test_progress.py",
    "tests/test_custom_task.py", "tests/test_user_patterns.py", "tests/test_examples.py",
    "-k", "wx or test_event_loops_gui",
]

#: ``-noreset``: without it Xvfb resets whenever its last client goes, and a
#: client connecting during the reset (GTK opens the display more than once)
#: fails at random with "cannot open display".
XVFB_RUN = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24 -noreset"]


@nox.session(python=FULL_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: style and common bugs."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session(python=FULL_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over the package."""
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session(python=CORE_PYTHONS)
def tests(session: nox.Session) -> None:
    """Core suite (threads, processes, asyncio) on every supported Python.

    ``tooling`` tests (the benchmark scripts, the state model's own check)
    do not depend on the Python version: ``full`` runs them, once.
    """
    session.install("-e", ".[test]")
    session.run(
        *PYTEST, *IN_PARALLEL, "-m", "not stress and not gui and not dask and not tooling",
        *session.posargs,
    )


@nox.session(python=FULL_PYTHON)
def full(session: nox.Session) -> None:
    """Everything but the long stress runs: GUI loops, processes, Dask, examples."""
    session.install("-e", ".[test,pyside6,traitsui,dask]")
    env = {"QT_QPA_PLATFORM": "offscreen", "QT_API": "pyside6", "PYTEST_QT_API": "pyside6"}
    session.run(
        *PYTEST, *IN_PARALLEL, "-m", "not stress", *(session.posargs or GUI_FIRST), env=env
    )


#: Longest wait (s) for ``.ci/run``'s background apt-get (see below).
APT_WAIT = 900


def _wait_for_system_packages(session: nox.Session) -> None:
    """Wait for ``.ci/run``'s background apt-get, if it started one.

    It writes its exit code, then what it did or its log's last lines, to
    the file ``OFFLOAD_CI_APT_STATUS`` names, once it is done.
    """
    path = os.environ.get("OFFLOAD_CI_APT_STATUS")
    if not path:
        return
    deadline = time.monotonic() + APT_WAIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            session.error(f"the system packages were not installed within {APT_WAIT} s")
        time.sleep(1)
    with open(path, encoding="utf-8") as file:
        code, _, report = file.read().partition(" ")
    session.log(report.strip())
    if code != "0":
        session.error("the system packages the wx session needs did not install (above)")


@nox.session(
    python=SYSTEM_PYTHON, venv_backend="virtualenv", venv_params=["--system-site-packages"]
)
def wx(session: nox.Session) -> None:
    """The wx event loop for real: Debian's wxPython, under Xvfb.

    Runs the GUI-loop and toolkit-selection tests and the shared behaviour
    suites on the wx loop (``-k wx``); Qt is not installed here, so
    ``ETSEventLoop`` must fall back to wx.
    """
    _wait_for_system_packages(session)
    probe = session.run(
        "python", "-c", "import importlib.util as u; print(bool(u.find_spec('wx')))",
        silent=True,
    )
    if "True" not in str(probe):
        message = (
            f"wxPython is not importable from {SYSTEM_PYTHON}: apt-get install "
            "python3-wxgtk4.0 xvfb (as .ci/run does)"
        )
        if os.environ.get("CI"):
            session.error(message)
        session.skip(message)
    session.install("-e", ".[test,wx,traitsui]")
    wrapper: list[str] = []
    if shutil.which("xvfb-run"):
        wrapper = XVFB_RUN
    elif not os.environ.get("DISPLAY"):
        session.error("no display for wx: apt-get install xvfb (for xvfb-run)")
    session.run(
        *wrapper, *PYTEST, "-m", "not stress", *(session.posargs or WX_TESTS),
        external=True, env={"ETS_TOOLKIT": ""},
    )


@nox.session(python=FULL_PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx HTML docs; any warning (broken cross-reference...) fails."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html",
        *session.posargs,
    )
