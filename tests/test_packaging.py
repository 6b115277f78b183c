"""What someone who depends on offload gets from its package.

The version in one place, ``python -m offload --version`` for bug reports,
the demo, the license, the project's links and changelog, and, from a
wheel, every file and entry point the package needs.

The checks of installed files mean something only when offload was
installed from a wheel, as every nox session installs it: an editable
install (``pip install -e .``) serves the source tree itself, so there they
skip, unless ``OFFLOAD_EXPECT_WHEEL=1`` (which nox sets) makes them fail.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

import offload
from offload.api import MultiprocessingContext

ROOT = Path(__file__).resolve().parent.parent

#: Set by nox's test sessions, which install the built wheel.
EXPECT_WHEEL = "OFFLOAD_EXPECT_WHEEL"

#: Longest time one ``python -m ...`` may take here, start-up included.
RUN_TIMEOUT = 50.0

#: What ``--version`` must never import: toolkits and Dask are slow to
#: import, and may be broken in the very installation being reported on.
HEAVY_MODULES = ("PySide6", "PyQt5", "PyQt6", "PySide2", "wx", "pyface", "traitsui", "dask",
                 "distributed", "cloudpickle")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
        env=env, cwd=ROOT,
    )


def _version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _report(output: str) -> dict[str, str]:
    """``--version``'s lines as {name: value} (two or more spaces between)."""
    rows = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in output.splitlines()]
    assert all(len(row) == 2 for row in rows), output
    return {name: value for name, value in rows}


# -- The version ---------------------------------------------------------------


def test_version_is_read_from_the_installed_metadata():
    code = (
        "import importlib.metadata as metadata\n"
        "real = metadata.version\n"
        "metadata.version = lambda name: '9.8.7' if name == 'offload' else real(name)\n"
        "import offload\n"
        "print(offload.__version__)\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "9.8.7"


def test_version_without_metadata_is_a_valid_placeholder():
    # Imported from a source tree that was never installed.
    code = (
        "import importlib.metadata as metadata\n"
        "def version(name):\n"
        "    raise metadata.PackageNotFoundError(name)\n"
        "metadata.version = version\n"
        "import offload\n"
        "print(offload.__version__)\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0+unknown"
    Version(out.stdout.strip())  # PEP 440, so that tools comparing versions cope


def test_version_is_the_distribution_version():
    assert offload.__version__ == importlib.metadata.version("offload")


def test_unknown_attribute_of_the_package_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        offload.nothing_here  # noqa: B018


# -- python -m offload ---------------------------------------------------------


def test_version_report_has_what_a_bug_report_needs():
    env = dict(os.environ, ETS_TOOLKIT="qt")
    env.pop("QT_API", None)
    out = _run("-m", "offload", "--version", env=env)
    assert out.returncode == 0, out.stderr
    report = _report(out.stdout)
    assert report["offload"] == offload.__version__
    assert report["Python"].startswith(f"{platform.python_version()} ")
    for name in ("traits", "pyface", "traitsui", "dask", "distributed", "cloudpickle"):
        assert report[name] == _version_of(name), name
    if importlib.util.find_spec("PySide6") is not None:
        assert f"PySide6 {_version_of('PySide6-Essentials')}" in report["Qt binding"]
    else:
        assert "PySide6" not in report["Qt binding"]
    if importlib.util.find_spec("wx") is None:
        assert report["wxPython"] == "not installed"
    else:
        assert report["wxPython"] == _version_of("wxPython")
    context = MultiprocessingContext()
    try:
        assert report["start method"].split()[0] == context.start_method
    finally:
        context.close()
    assert report["ETS_TOOLKIT"] == "qt"
    assert report["QT_API"] == "not set"


def test_version_report_imports_no_toolkit_and_no_dask():
    code = (
        "import sys\n"
        "from offload.__main__ import main\n"
        "main(['--version'])\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "print('imported', ','.join(heavy) or '-')\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "imported -"


def test_version_report_names_what_is_missing():
    code = (
        "import sys\n"
        f"for name in {HEAVY_MODULES!r}:\n"
        "    sys.modules[name] = None  # as if not installed\n"
        "from offload.__main__ import main\n"
        "sys.exit(main(['--version']))\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    report = _report(out.stdout)
    for name in ("pyface", "traitsui", "dask", "distributed", "cloudpickle", "wxPython"):
        assert report[name] == "not installed", name
    assert report["Qt binding"] == "none installed"


def test_an_unknown_option_says_what_is_known():
    out = _run("-m", "offload", "--bogus")
    assert out.returncode == 2
    assert "--bogus" in out.stderr
    assert "--version" in out.stderr


def test_without_options_it_says_how_to_use_it():
    out = _run("-m", "offload")
    assert out.returncode == 0, out.stderr
    assert "--version" in out.stdout
    assert "python -m offload.demo" in out.stdout


def test_the_demo_runs():
    out = _run("-m", "offload.demo")
    assert out.returncode == 0, out.stderr
    assert "never_ending   cancelled" in out.stdout
    assert out.stdout.rstrip().endswith("executor: stopped")


# -- Metadata: license, links, entry points --------------------------------------


def test_license_is_an_spdx_expression_with_its_file():
    metadata = importlib.metadata.metadata("offload")
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert "LICENSE" in (metadata.get_all("License-File") or [])
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, the offload developers" in license_text


def test_project_links_for_docs_source_changelog_and_issues():
    links = dict(
        entry.split(", ", 1)
        for entry in importlib.metadata.metadata("offload").get_all("Project-URL") or []
    )
    assert set(links) >= {"Documentation", "Source", "Changelog", "Issues"}, links
    assert all(url.startswith("https://") for url in links.values()), links


def test_pytest_plugin_is_registered():
    [entry] = [
        entry for entry in importlib.metadata.entry_points(group="pytest11")
        if entry.name == "offload"
    ]
    assert entry.value == "offload.testing.pytest_plugin"
    assert entry.dist is not None and entry.dist.name == "offload"
    assert hasattr(entry.load(), "traits_executor")


def test_changelog_has_this_release_and_links_the_migration_guide():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    release = Version(offload.__version__).base_version
    assert re.search(rf"^## \[{re.escape(release)}\] - ", changelog, re.MULTILINE), release
    assert re.search(rf"^\[{re.escape(release)}\]: https://", changelog, re.MULTILINE)
    assert "migration.html" in changelog or "migration.rst" in changelog


def test_ci_tests_every_python_the_package_claims():
    metadata = importlib.metadata.metadata("offload")
    claimed = sorted(
        classifier.rsplit(" :: ", 1)[1]
        for classifier in metadata.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
    )
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    [tested] = [
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", None) == "CORE_PYTHONS" for target in node.targets)
    ]
    assert claimed == sorted(tested, key=Version)
    assert metadata["Requires-Python"] == f">={claimed[0]}"
    versions_page = (ROOT / "docs" / "versions.rst").read_text(encoding="utf-8")
    for python in claimed:
        assert python in versions_page, python


# -- The installed files (a wheel) -----------------------------------------------


@pytest.fixture
def wheel_install() -> importlib.metadata.Distribution:
    """offload's distribution, installed from a wheel (else skip or fail)."""
    distribution = importlib.metadata.distribution("offload")
    direct_url = json.loads(distribution.read_text("direct_url.json") or "{}")
    if direct_url.get("dir_info", {}).get("editable"):
        message = "offload is an editable install: its files are the source tree"
        if os.environ.get(EXPECT_WHEEL):
            pytest.fail(f"{message}, but {EXPECT_WHEEL} is set (nox installs the wheel)")
        pytest.skip(message)
    return distribution


def test_offload_is_imported_from_the_installed_wheel(wheel_install):
    imported = Path(offload.__file__).resolve()
    assert imported == Path(wheel_install.locate_file("offload/__init__.py")).resolve()
    assert not imported.is_relative_to(ROOT / "src")


def test_the_wheel_installed_every_file_of_the_package(wheel_install):
    installed = {path.as_posix() for path in wheel_install.files or []}
    package = ROOT / "src" / "offload"
    expected = {
        path.relative_to(package.parent).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "offload/py.typed" in expected
    assert expected - installed == set()
    [license_path] = [path for path in wheel_install.files or [] if path.name == "LICENSE"]
    assert license_path.parent.name == "licenses"
    assert license_path.read_text(encoding="utf-8") == (ROOT / "LICENSE").read_text(
        encoding="utf-8"
    )
