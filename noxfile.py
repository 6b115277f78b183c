"""Test sessions: ``nox`` runs them all (lint, types, tests on every Python, docs).

The core suite runs on Python 3.10-3.13; the full matrix (GUI loops,
processes, Dask) runs on 3.11, the version the GUI stack is pinned for.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "full", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

CORE_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
FULL_PYTHON = "3.11"

PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider"]


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
    """Core suite (threads, asyncio) on every supported Python."""
    session.install("-e", ".[test]")
    session.run(*PYTEST, "-m", "not stress and not gui and not dask", *session.posargs)


@nox.session(python=FULL_PYTHON)
def full(session: nox.Session) -> None:
    """Everything but the long stress runs: GUI loops, processes, Dask, examples."""
    session.install("-e", ".[test,pyside6,traitsui,dask]")
    env = {"QT_QPA_PLATFORM": "offscreen", "QT_API": "pyside6", "PYTEST_QT_API": "pyside6"}
    session.run(*PYTEST, "-m", "not stress", *session.posargs, env=env)


@nox.session(python=FULL_PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx HTML docs; any warning (broken cross-reference...) fails."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html",
        *session.posargs,
    )
