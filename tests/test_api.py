"""The public door: names, docstrings, and no eager toolkit imports."""

from __future__ import annotations

import subprocess
import sys

import offload.api
import offload.testing

SPEC_NAMES = {
    "TraitsExecutor", "submit_call", "submit_iteration", "submit_progress",
    "CallFuture", "IterationFuture", "ProgressFuture", "TaskCancelled",
    "FutureState", "WAITING", "EXECUTING", "COMPLETED", "FAILED", "CANCELLING",
    "CANCELLED", "ExecutorState", "RUNNING", "STOPPING", "STOPPED",
    "BaseFuture", "BaseTask", "IFuture", "ITaskSpecification",
    "IParallelContext", "MultithreadingContext", "MultiprocessingContext",
    "IEventLoop", "AsyncioEventLoop", "ETSEventLoop",
}
NEW_NAMES = {
    "TaskFailed", "DaskContext", "QtEventLoop", "WxEventLoop",
    "submit_steps", "StepsFuture", "IStepsReporter", "FutureGroup",
    "TaskTimedOut",
    "shared_array",
}


def test_all_lists_the_spec_names():
    names = set(offload.api.__all__)
    assert len(names) == len(offload.api.__all__), "a name is listed twice"
    assert SPEC_NAMES <= names
    assert names <= SPEC_NAMES | NEW_NAMES


def test_every_public_name_resolves_and_is_documented():
    for module in (offload.api, offload.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, (str, float)) or name.endswith("State"):
                continue  # constants and trait types are documented in api's docstring
            assert value.__doc__ and value.__doc__.strip(), f"{name} has no docstring"
    assert offload.api.__doc__


def test_state_constants_are_plain_strings():
    assert offload.api.WAITING == "waiting"
    assert offload.api.CANCELLING == "cancelling"
    assert offload.api.STOPPED == "stopped"


def test_importing_the_api_imports_no_toolkit_or_dask():
    code = (
        "import sys, offload.api, offload.testing\n"
        "heavy = [m for m in ('PySide6', 'PyQt5', 'PyQt6', 'wx', 'pyface', 'dask', "
        "'distributed', 'cloudpickle') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_unknown_attribute_is_an_attribute_error():
    try:
        offload.api.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_star_import_works_without_optional_packages_and_use_says_what_to_install():
    code = (
        "import sys\n"
        "for m in ('distributed', 'pyface', 'pyface.qt', 'wx'):\n"
        "    sys.modules[m] = None  # as if not installed\n"
        "from offload.api import *\n"
        "try:\n"
        "    DaskContext()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "offload[dask]" in out.stdout


def test_the_public_names_of_api_are_exactly_all():
    # Traits Futures' own test_api: its users' copies of it must pass too
    # (under pytest, which adds names to the modules it rewrites).
    public = {name for name in dir(offload.api) if not name.startswith("_")}
    assert public == set(offload.api.__all__)
