"""The documentation's code runs, and prints what the pages say it prints.

Each script in ``docs/snippets`` that a page follows with "Its output::" is
run in a fresh interpreter and its output compared with the page's block;
the two snippets that are tests are run by pytest; the TraitsUI application
of the getting-started page is driven without a window.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
SNIPPETS = DOCS / "snippets"

#: ``.. literalinclude:: [../]snippets/<name>.py`` ... ``Its output::``
_INCLUDE = re.compile(r"^\.\. literalinclude:: (?:\.\./)*snippets/(\w+)\.py\s*$")


def documented_outputs() -> dict[str, str]:
    """Snippet name -> the output block that follows its inclusion in a page."""
    found: dict[str, str] = {}
    for page in sorted(DOCS.rglob("*.rst")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            match = _INCLUDE.match(line)
            if match is None:
                continue
            # The output block, if any, comes before the next directive.
            rest = lines[index + 1 :]
            for offset, later in enumerate(rest):
                if later.startswith(".. "):
                    break
                if later.strip() == "Its output::":
                    block = []
                    for text in rest[offset + 1 :]:
                        if text.strip() and not text.startswith("   "):
                            break
                        block.append(text[3:])
                    found[match.group(1)] = "\n".join(block).strip("\n")
                    break
    return found


OUTPUTS = documented_outputs()


def test_the_pages_show_the_output_of_the_runnable_snippets():
    assert {"first_asyncio", "cancel_asyncio", "failures", "asyncio_run", "custom_task"} <= set(
        OUTPUTS
    )


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_snippet_prints_what_the_docs_say(name: str) -> None:
    run = subprocess.run(
        [sys.executable, "-W", "error", str(SNIPPETS / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=SNIPPETS,
    )
    assert run.returncode == 0, run.stderr
    printed = "\n".join(line.rstrip() for line in run.stdout.strip("\n").splitlines())
    assert printed == OUTPUTS[name]


@pytest.mark.parametrize("name", ["test_with_assistant", "test_with_fixtures"])
def test_testing_snippets_pass(name: str) -> None:
    # Only the plugins the snippet needs, by their entry-point names (offload's
    # fixtures, and pytest-timeout for the project's ``timeout`` setting):
    # every installed plugin autoloaded (Hypothesis, pytest-qt, xdist...)
    # took 2-3 s of the 3 s this took.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "offload", "-p", "timeout", str(SNIPPETS / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=DOCS.parent,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "passed" in run.stdout and "failed" not in run.stdout


#: Drives the getting-started TraitsUI application without a window: the
#: "null" toolkit, so that importing TraitsUI starts no GUI, and the
#: executor on an asyncio loop run by TestAssistant; the task's sleep is
#: cut to a 40th.
_DRIVE_FIRST_TRAITSUI = """
import importlib.util, sys, time, types
from offload.api import AsyncioEventLoop, TraitsExecutor
from offload.testing import TestAssistant

spec = importlib.util.spec_from_file_location("first_traitsui", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
# The snippet's "slow" square sleeps 2 s a call: 0.05 s is as slow here.
module.time = types.SimpleNamespace(sleep=lambda seconds: time.sleep(seconds / 40))

assistant = TestAssistant()
assistant.setUp()
executor = TraitsExecutor(event_loop=assistant._event_loop)
try:
    app = module.SquareApp(executor=executor)
    for n in (7, 13):
        app.n = n
        app.calculate = True
        assistant.run_until(app, "message", lambda app: not app.message.startswith("Squaring"))
        print(app.message)
    app.calculate = True
    app.cancel = True
    assistant.run_until(app, "message", lambda app: app.message == "Cancelled")
    print(app.message, app.future.state)
finally:
    executor.shutdown(timeout=10)
    assistant.tearDown()
"""


def test_first_traitsui_application_without_a_window():
    pytest.importorskip("traitsui")
    run = subprocess.run(
        [sys.executable, "-c", _DRIVE_FIRST_TRAITSUI, str(SNIPPETS / "first_traitsui.py")],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, "ETS_TOOLKIT": "null"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "The square is 49",
        "Failed: 13 is unlucky",
        "Cancelled cancelled",
    ]


def test_the_readme_example_runs():
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None, "the README has no Python example"
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code.group(1)],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "state: executing",
        "state: completed",
        "result: 1267650600228229401496703205376",
    ]


def test_the_api_reference_documents_every_public_name():
    import offload.api
    import offload.testing

    for module, page in ((offload.api, "api.rst"), (offload.testing, "testing.rst")):
        text = (DOCS / "api" / page).read_text(encoding="utf-8")
        documented = set(
            re.findall(r"^ *\.\. (?:auto)?(?:class|function|exception|data):: (\w+)", text, re.M)
        )
        missing = set(module.__all__) - documented
        assert not missing, f"{page} does not document {sorted(missing)}"


def test_the_examples_page_includes_every_example_and_its_screenshot():
    page = (DOCS / "examples.rst").read_text(encoding="utf-8")
    for script in sorted((DOCS.parent / "examples").glob("*.py")):
        assert f".. literalinclude:: ../examples/{script.name}" in page, script.name
        if (DOCS / "images" / f"{script.stem}.png").exists():
            assert f".. image:: images/{script.stem}.png" in page, script.stem
