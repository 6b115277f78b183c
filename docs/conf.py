"""Sphinx configuration for the offload documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (or
``nox -s docs``).  Warnings are errors, and ``nitpicky`` makes every
unresolved cross-reference a warning, so a broken link fails the build.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import offload

project = "offload"
author = "the offload developers"
copyright = "2026, the offload developers"
release = offload.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
]

root_doc = "index"
exclude_patterns = ["_build", "snippets/README.txt"]
templates_path: list[str] = []

# -- Cross-references ---------------------------------------------------------

# Every reference must resolve.  There is no network in CI, so no
# intersphinx: names from outside offload are plain text, and the private
# modules of offload (which the API reference does not document) are not
# link targets either.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(traits|concurrent|asyncio|collections|typing|abc|unittest|queue|"
        r"threading|multiprocessing|pickle|distributed|dask|pyface|traitsui|wx|PySide6)\..*",
    ),
    # Modules outside offload (``:mod:`pickle```) are plain text too.
    (r"py:mod", r"(?!offload).*"),
    (r"py:.*", r"offload\._.*"),
    (r"py:class", r"(optional|callable|object|tuple of str|default: .*)"),
    (
        r"py:class",
        r"(Any|Callable|Iterable|Iterator|Generator|ParamSpec|TypeVar|P|R|"
        r"P\.args|P\.kwargs|Enum|HasStrictTraits|HasTraits|ABC|TestCase|"
        r"Executor|AbstractEventLoop|Future|BaseException|Exception|"
        r"RuntimeError|TypeError|AttributeError|"
        r"IPingee|IEventLoopHelper|IMessageRouter|ICancelFlag|Receiver|Send)",
    ),
]

# -- autodoc / numpydoc -------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": False}

# Optional toolkits and Dask: the docs build needs none of them.  A module
# that is not installed is mocked so that its offload wrapper still imports
# and shows its docstrings.
_OPTIONAL = ["pyface", "PySide6", "PyQt5", "PyQt6", "wx", "dask", "distributed",
             "cloudpickle", "traitsui"]
autodoc_mock_imports = [m for m in _OPTIONAL if importlib.util.find_spec(m) is None]

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# -- HTML -----------------------------------------------------------------------

html_theme = "furo"
html_title = f"offload {release}"
html_static_path: list[str] = []

# -- What has landed -------------------------------------------------------------
#
# Some parts of offload are built by separate pieces of work (processes, GUI
# loops, Dask).  ``offload.api`` lists every name in ``__all__`` from the
# start and loads the optional ones lazily, so a name counts as *available*
# here when it is in ``__all__`` and, for a lazy name, the private module that
# defines it exists in the source tree (whether its toolkit is installed does
# not matter: autodoc mocks missing toolkits).  Pages say what depends on such
# a name in blocks
#
#     .. if-public:: MultiprocessingContext
#
#        (shown when the name is available)
#
#     .. if-not-public:: MultiprocessingContext
#
#        (shown otherwise: say that it is planned)
#
# which are resolved when the page is read, so the docs never claim that
# something works before it does.  References to a name that is not
# available are not counted as broken.

import offload.api  # noqa: E402


def _available(name: str) -> bool:
    if name not in offload.api.__all__:
        return False
    lazy = getattr(offload.api, "_LAZY", {}).get(name)
    return lazy is None or importlib.util.find_spec(lazy[0]) is not None


PUBLIC = frozenset(name for name in offload.api.__all__ if _available(name))
for _name in sorted(set(offload.api.__all__) - PUBLIC):
    nitpick_ignore_regex.append((r"py:.*", rf"(offload\.api\.)?{_name}(\..*)?"))

# Load the lazy names now, with the missing toolkits mocked, and Qt last:
# once PySide6 is imported its import hook inspects every later import, and
# fails on a mocked module (so autodoc could not import WxEventLoop after
# QtEventLoop).  ``offload.api`` keeps what it loaded for autodoc to find.
from sphinx.ext.autodoc.mock import mock as _mock  # noqa: E402

with _mock(autodoc_mock_imports):
    for _name in sorted(getattr(offload.api, "_LAZY", {}), key=lambda n: n == "QtEventLoop"):
        if _name in PUBLIC:
            getattr(offload.api, _name)

_BLOCK = re.compile(r"^( *)\.\. if-(not-)?(public|exists):: *(\S+) *$", re.MULTILINE)

#: The root of the repository: ``if-exists`` paths are relative to it.
_ROOT = Path(__file__).resolve().parent.parent


def _holds(kind: str, argument: str) -> bool:
    if kind == "public":
        return argument in PUBLIC
    return (_ROOT / argument).is_file()


def resolve_if_public(text: str) -> str:
    """Keep or drop the ``if-[not-]public`` / ``if-[not-]exists`` blocks of a page.

    ``.. if-exists:: examples/foo.py`` keeps its block when that file of the
    repository exists (the examples and their screenshots are written
    separately from these pages).
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _BLOCK.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent, negated, kind, argument = match.groups()
        keep = _holds(kind, argument) != bool(negated)
        body_indent = indent + "   "
        i += 1
        body: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or lines[i].startswith(body_indent)
        ):
            body.append(lines[i])
            i += 1
        if keep:
            kept = [indent + line[len(body_indent):] if line.strip() else "" for line in body]
            # Blocks may nest (an example, and inside it its screenshot).
            out.extend(resolve_if_public("\n".join(kept)).split("\n"))
            out.append("")
        else:
            # Keep the line count, so that warnings point at the right line.
            out.extend("" for _ in body)
            out.append("")
    return "\n".join(out)


def _on_source_read(app: object, docname: str, source: list[str]) -> None:
    # A page re-reads when a file it tests for appears or changes (Sphinx
    # counts a missing dependency as changed, so it re-reads until then).
    for match in _BLOCK.finditer(source[0]):
        if match.group(3) == "exists":
            app.env.note_dependency(str(_ROOT / match.group(4)))  # type: ignore[attr-defined]
    source[0] = resolve_if_public(source[0])


def setup(app: object) -> dict[str, bool]:
    app.connect("source-read", _on_source_read)  # type: ignore[attr-defined]
    return {"parallel_read_safe": True}
