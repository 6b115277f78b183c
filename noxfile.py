"""Test sessions: ``nox`` runs them all (build, lint, types, tests on every Python, docs).

``build`` makes the sdist and, from it, the wheel (``dist/``), and checks
both; every session that needs offload installs that wheel, as a user
would, so a file missing from it fails CI.  The core suite runs on Python
3.10-3.13; the full matrix (Qt offscreen, processes, Dask, the examples)
runs on 3.11, the version the GUI stack is pinned for, with the newest
versions of the dependencies, and on 3.10 with the lowest versions
pyproject.toml allows (``lowest``); the wx loop runs on
Debian's wxPython under Xvfb (``wx``); the GUI suites run once more on
PyQt6 (``pyqt6``), ``full`` running them on PySide6.
"""

from __future__ import annotations

import configparser
import email.parser
import glob
import os
import pathlib
import shutil
import tarfile
import time
import zipfile

import nox

#: The default run.  ``tests-3.11`` is left out: ``full`` runs the same tests
#: (and more) on 3.11; ``nox -s tests-3.11`` still runs it alone.
# CI's budget is 20 minutes on 2 cores: the default run tests the lowest
# Python (3.10, in ``lowest``, on the lowest dependencies), 3.11 (``full``,
# everything) and the newest (``tests-3.13``); ``nox -s tests-3.10
# tests-3.12`` runs the core suite on the others.
nox.options.sessions = [
    "build", "lint", "typecheck", "tests-3.13", "full", "lowest",
    "wx", "pyqt6", "docs", "traits_futures",
]
nox.options.reuse_existing_virtualenvs = True
#: uv makes the venvs and installs into them (``nox[uv]``, as the README's
#: command installs it): a quarter of pip's time on a fresh machine, where
#: every wheel is downloaded.  Without uv, nox falls back to virtualenv.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

CORE_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
FULL_PYTHON = "3.11"
#: The oldest supported Python: the lowest declared versions of the
#: dependencies have wheels for it.
LOWEST_PYTHON = "3.10"

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
    "tests/test_steps.py", "tests/test_group.py", "tests/test_custom_task.py",
    "tests/test_user_patterns.py", "tests/test_ui.py", "tests/test_examples.py",
    "-k", "wx or test_event_loops_gui",
]

#: What the pyqt6 session runs: every module with Qt cases (``-m gui``
#: keeps those; wx's skip, wx not being installed there).
QT_BINDING_TESTS = [
    "tests/test_event_loops_gui.py",
    "tests/test_call.py", "tests/test_iteration.py", "tests/test_progress.py",
    "tests/test_steps.py", "tests/test_group.py", "tests/test_custom_task.py",
    "tests/test_ui.py", "tests/test_examples.py",
]

#: ``-noreset``: without it Xvfb resets whenever its last client goes, and a
#: client connecting during the reset (GTK opens the display more than once)
#: fails at random with "cannot open display".
XVFB_RUN = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24 -noreset"]


#: Where ``build`` writes the sdist and the wheel that the other sessions install.
DIST = "dist"

#: What the sdist (and so the wheel) is made of, besides the package's
#: files: a wheel older than any of them is rebuilt before it is installed.
BUILD_FILES = ["pyproject.toml", "README.md", "LICENSE"]

#: Entry points the wheel must declare: (group, name) -> object reference.
#: pytest finds offload's fixtures through ``pytest11``.  (offload reads the
#: group ``offload.event_loops`` but registers nothing in it: Qt and wx are
#: built in.)
REQUIRED_ENTRY_POINTS = {("pytest11", "offload"): "offload.testing.pytest_plugin"}

#: Tells tests/test_packaging.py that offload must come from a wheel here.
WHEEL_ENV = {"OFFLOAD_EXPECT_WHEEL": "1"}


def _package_files() -> set[str]:
    """Every file of the package in the source tree, as wheel paths (``offload/...``)."""
    return {
        path.relative_to("src").as_posix()
        for path in pathlib.Path("src/offload").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _wheel_is_stale(wheel: str) -> bool:
    """Whether a source file changed after ``wheel`` was built."""
    sources = BUILD_FILES + [os.path.join("src", name) for name in _package_files()]
    return max(os.path.getmtime(path) for path in sources) > os.path.getmtime(wheel)


def _check_wheel(wheel: str) -> list[str]:
    """What ``wheel`` lacks of what the package needs, or holds that is stale.

    Every file under ``src/offload`` (each subpackage, ``py.typed``, without
    which type checkers ignore offload's hints), the
    LICENSE, the required entry points and the license and project links in
    its metadata, each checked against the source tree rather than against
    what the build backend was told to include.
    """
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [dist_info] = {name.split("/")[0] for name in names if ".dist-info/" in name}

        package = {name for name in names if name.startswith("offload/")}
        expected = _package_files() | {"offload/py.typed"}
        problems += [f"missing {name}" for name in sorted(expected - package)]
        problems += [f"not in the source tree: {name}" for name in sorted(package - expected)]

        license_path = f"{dist_info}/licenses/LICENSE"
        if license_path not in names:
            problems.append(f"missing {license_path}")
        elif archive.read(license_path) != pathlib.Path("LICENSE").read_bytes():
            problems.append(f"{license_path} differs from LICENSE")

        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.optionxform = str  # names are case-sensitive
        if f"{dist_info}/entry_points.txt" in names:
            entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
        for (group, name), value in REQUIRED_ENTRY_POINTS.items():
            found = entry_points.get(group, name, fallback=None)
            if found != value:
                problems.append(f"entry point [{group}] {name} is {found!r}, not {value!r}")

        metadata = email.parser.BytesParser().parsebytes(archive.read(f"{dist_info}/METADATA"))
        if metadata["License-Expression"] != "BSD-3-Clause":
            problems.append(f"License-Expression is {metadata['License-Expression']!r}")
        links = {entry.split(",")[0] for entry in metadata.get_all("Project-URL") or []}
        for label in ("Documentation", "Source", "Changelog", "Issues"):
            if label not in links:
                problems.append(f"no {label} among the project URLs")
    return [f"{wheel}: {problem}" for problem in problems]


def _check_sdist(sdist: str) -> list[str]:
    """What ``sdist`` lacks of the sources the wheel is built from."""
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {f"src/{name}" for name in _package_files()} | {
        "pyproject.toml", "README.md", "LICENSE",
    }
    return [f"{sdist}: missing {name}" for name in sorted(expected - names)]


def _build(session: nox.Session) -> str | None:
    """Build the sdist and the wheel into ``dist/``, check them; return the wheel.

    None under ``nox --no-install``, which skips the build with the installs.
    """
    for old in glob.glob(os.path.join(DIST, "offload-*")):
        os.remove(old)
    # setuptools adds the file list of an earlier build's egg-info to the
    # sdist: without this, a file the configuration leaves out would still
    # ship, and the check below would pass.
    for leftover in ["build", *glob.glob("src/*.egg-info")]:
        shutil.rmtree(leftover, ignore_errors=True)
    # build makes an isolated environment for setuptools; with uv where nox
    # uses it.
    installer = ["--installer=uv"] if session.venv_backend == "uv" else []
    session.install("build[uv]>=1.2" if installer else "build>=1.2", "twine>=6.1")
    # The sdist first, then the wheel from the unpacked sdist: a file the
    # sdist forgets is then missing from the wheel too, and caught below.
    # (run_install: the sessions that install the wheel need it even under
    # ``nox --install-only``.)
    session.run_install("python", "-m", "build", "--outdir", DIST, *installer)
    sdists = glob.glob(os.path.join(DIST, "offload-*.tar.gz"))
    wheels = glob.glob(os.path.join(DIST, "offload-*.whl"))
    if not wheels:
        return None
    [sdist], [wheel] = sdists, wheels
    session.run_install("twine", "check", "--strict", sdist, wheel)
    problems = _check_wheel(wheel) + _check_sdist(sdist)
    if problems:
        session.error("the package is incomplete:\n  " + "\n  ".join(problems))
    session.log(f"{wheel}: every package file, LICENSE, entry points and metadata as needed")
    return wheel


def install_wheel(session: nox.Session, extras: str, *install_options: str) -> None:
    """Install the built wheel with ``extras``, building it if missing or stale.

    ``install_options`` go to the installer (``--resolution=lowest-direct``).

    ``nox -s build`` builds it once for a whole run; a session run alone
    (``nox -s full``) builds it when ``dist/`` has none newer than the
    sources.  The session then prints ``python -m offload --version``: its
    log says what was tested.
    """
    wheels = glob.glob(os.path.join(DIST, "offload-*.whl"))
    if len(wheels) == 1 and not _wheel_is_stale(wheels[0]):
        wheel = wheels[0]
    else:
        wheel = _build(session)
        if wheel is None:
            return
    session.install(*install_options, f"{wheel}[{extras}]")
    # A reused venv may hold this same version already (an earlier wheel, or
    # an editable install of the source tree): replace it with this wheel.
    session.install("--force-reinstall", "--no-deps", wheel)
    # From the repository's root, as the tests run: offload must still come
    # from the wheel, not from src/ (tests/test_packaging.py checks it too,
    # in the sessions that run it).
    location = session.run("python", "-c", "import offload; print(offload.__file__)", silent=True)
    if location and os.path.abspath("src") in location:
        session.error(f"offload is imported from the source tree, not the wheel: {location}")
    session.run("python", "-m", "offload", "--version")


@nox.session(python=FULL_PYTHON)
def build(session: nox.Session) -> None:
    """The sdist and the wheel, once per run; twine check; the wheel's files.

    The other sessions install this wheel.
    """
    _build(session)


@nox.session(python=FULL_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: style and common bugs."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")


#: A user's module, type-checked against the installed wheel (no config
#: file, so nothing hides a missing ``py.typed``).
USER_MODULE = "from offload.api import submit_call\nreveal_type(submit_call)\n"


@nox.session(python=FULL_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over the package; and a user's code sees its type hints."""
    install_wheel(session, "test")
    session.install("mypy>=1.10")
    session.run("mypy")
    seen = session.run("mypy", "--config-file=", "-c", USER_MODULE, silent=True)
    if "CallFuture" not in str(seen):
        session.error(f"mypy does not see submit_call's types in the wheel:\n{seen}")


@nox.session(python=CORE_PYTHONS)
def tests(session: nox.Session) -> None:
    """Core suite (threads, processes, asyncio) on one Python (3.13 by default).

    ``tooling`` tests (the benchmark scripts, the state model's own check)
    do not depend on the Python version: ``full`` runs them, once.
    """
    install_wheel(session, "test")
    session.run(
        *PYTEST, *IN_PARALLEL, "-m", "not stress and not gui and not dask and not tooling",
        *session.posargs, env=WHEEL_ENV,
    )


@nox.session(python=FULL_PYTHON)
def full(session: nox.Session) -> None:
    """Everything but the long stress runs: GUI loops, processes, Dask, examples."""
    install_wheel(session, "test,pyside6,traitsui,dask,examples")
    env = {"QT_QPA_PLATFORM": "offscreen", "QT_API": "pyside6", "PYTEST_QT_API": "pyside6",
           **WHEEL_ENV}
    session.run(
        *PYTEST, *IN_PARALLEL, "-m", "not stress", *(session.posargs or GUI_FIRST), env=env
    )


#: Prints the versions the ``lowest`` session tests, for its log.
SHOW_VERSIONS = (
    "from importlib.metadata import version as v; print(', '.join(f'{n} {v(n)}' for n in "
    "['traits', 'pyface', 'traitsui', 'cloudpickle', 'dask', 'distributed', "
    "'PySide6-Essentials', 'pytest', 'pytest-timeout', 'pytest-xdist', 'hypothesis', "
    "'psutil', 'cryptography']))"
)



def _requirements(extras: list[str]) -> list[str]:
    """offload's requirements and those of ``extras``, from pyproject.toml."""
    import tomllib  # Python 3.11+, which the lowest session's nox runs on in CI

    with open("pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += [
            requirement for requirement in project["optional-dependencies"][extra]
            if not requirement.startswith("offload")
        ]
    return found


#: What ``lowest`` leaves to ``full`` and ``tests-3.13`` (see there).
LOWEST_LEAVES_OUT = {
    "tests/test_examples.py", "tests/test_state_model.py", "tests/test_pause_model.py",
    "tests/test_stress.py", "tests/test_recycling.py",
}


@nox.session(python=LOWEST_PYTHON, reuse_venv=False)
def lowest(session: nox.Session) -> None:
    """The suite on the lowest version of each dependency pyproject.toml allows.

    Its venv is made afresh each run: packages already installed there
    would satisfy the requirements and stay, at newer versions.

    Every lower bound there is a promise: uv's ``--resolution
    lowest-direct`` installs the lowest version that each requirement of
    offload and of its extras allows (Traits, Pyface, TraitsUI, cloudpickle,
    Dask/distributed, PySide6 and the test tools), and the newest of what
    they pull in.  ``full`` tests the newest versions.  Qt runs offscreen.
    """
    if session.venv_backend != "uv":
        message = "the lowest session needs uv: pip install 'nox[uv]'"
        if os.environ.get("CI"):
            session.error(message)
        session.skip(message)
    extras = ["test", "pyside6", "traitsui", "dask"]
    # uv lowers only what it is asked for directly, and of a wheel only the
    # wheel itself: offload's own requirements go on the command line too.
    install_wheel(
        session, ",".join(extras), "--resolution=lowest-direct", *_requirements(extras)
    )
    session.run("python", "-c", SHOW_VERSIONS)
    env = {
        "QT_QPA_PLATFORM": "offscreen", "QT_API": "pyside6", "PYTEST_QT_API": "pyside6",
        **WHEEL_ENV,
    }
    # The examples run in full, wx and pyqt6; here they would cost a
    # minute of CI's budget and test the examples more than the versions.
    # So do the long model-based and load tests, which exercise offload's
    # own machinery more than its dependencies' versions.
    tests = [path for path in GUI_FIRST if path not in LOWEST_LEAVES_OUT]
    session.run(
        *PYTEST, *IN_PARALLEL, "-m", "not stress and not tooling",
        *(session.posargs or tests), env=env,
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
    install_wheel(session, "test,wx,traitsui,examples")
    wrapper: list[str] = []
    if shutil.which("xvfb-run"):
        wrapper = XVFB_RUN
    elif not os.environ.get("DISPLAY"):
        session.error("no display for wx: apt-get install xvfb (for xvfb-run)")
    session.run(
        *wrapper, *PYTEST, "-m", "not stress", *(session.posargs or WX_TESTS),
        external=True, env={"ETS_TOOLKIT": "", **WHEEL_ENV},
    )


@nox.session(name="traits_futures", python=FULL_PYTHON)
def traits_futures(session: nox.Session) -> None:
    """Traits Futures 0.3.1's own tests of its public API, run on offload.

    ``tools/traits_futures_suite.py`` downloads its sdist from PyPI (nothing
    of it is kept here), changes the tests' imports as a migrating user
    would, and runs them on Qt offscreen; the tests that cannot apply are
    listed there with their reasons.
    """
    # pip: the script downloads the sdist with it (uv's venvs have none).
    install_wheel(session, "test,pyside6,traitsui")
    session.install("pip")
    env = {"ETS_TOOLKIT": "qt", "QT_QPA_PLATFORM": "offscreen", "QT_API": "pyside6", **WHEEL_ENV}
    session.run("python", "tools/traits_futures_suite.py", "--", *session.posargs, env=env)


@nox.session(python=FULL_PYTHON)
def pyqt6(session: nox.Session) -> None:
    """The GUI suites on PyQt6, offscreen: the Qt loop, offload.ui, the examples.

    ``full`` runs them on PySide6; Traits Futures claims Qt 6 support for
    both bindings, and they differ (PyQt6 has no ``exec_``, enums are
    scoped), so both are tested.
    """
    install_wheel(session, "test,pyqt6,examples")
    env = {"QT_QPA_PLATFORM": "offscreen", "QT_API": "pyqt6", "ETS_TOOLKIT": "qt", **WHEEL_ENV}
    session.run(
        *PYTEST, *IN_PARALLEL, "-m", "gui and not dask",
        *(session.posargs or QT_BINDING_TESTS), env=env,
    )


@nox.session(python=FULL_PYTHON)
def docs(session: nox.Session) -> None:
    """Sphinx HTML docs; any warning (broken cross-reference...) fails."""
    install_wheel(session, "docs")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html",
        *session.posargs,
    )
