"""The API reference's Sphinx roles become cross-references to the objects the names mean.

A small package written to a temporary folder is loaded by griffe with the extension of
``mkdocs.yml`` (``tools/griffe_roles.py``), as mkdocstrings loads isamap's packages; the browser
test (``tests/test_docs_site.py``) checks the rendered site.
"""

from __future__ import annotations

import griffe

from tests.support import REPO_ROOT

PACKAGE = {
    "__init__.py": '"""Start with :func:`helper`, :class:`~pkgx.shapes.Square` or\n'
                   ':mod:`pkgx.shapes`."""\n'
                   "from pkgx.shapes import Square\n\n\n"
                   "def helper():\n"
                   '    """Build a :class:`Square` (see :meth:`Square.area`); :exc:`ValueError`\n'
                   '    otherwise, or :class:`the square\n    <pkgx.shapes.Square>`."""\n',
    "shapes.py": '"""Shapes."""\n\n\nclass Square:\n'
                 '    """A square; :attr:`side` is its side."""\n\n'
                 "    side: float = 1.0\n\n"
                 "    def area(self):\n"
                 '        """:attr:`side` squared, from :func:`_private`."""\n',
}


def _load(tmp_path):
    root = tmp_path / "pkgx"
    root.mkdir()
    for name, text in PACKAGE.items():
        (root / name).write_text(text)
    extensions = griffe.load_extensions(f"{REPO_ROOT / 'tools' / 'griffe_roles.py'}:SphinxRoles")
    return griffe.load("pkgx", search_paths=[str(tmp_path)], extensions=extensions)


def _ref(identifier: str, shown: str) -> str:
    return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'


def test_roles_resolve_in_the_scope_of_their_docstring(tmp_path):
    package = _load(tmp_path)
    top = package.docstring.value
    assert _ref("pkgx.helper", "helper()") in top
    assert _ref("pkgx.shapes.Square", "Square") in top  # ~ shows the last name
    assert _ref("pkgx.shapes", "pkgx.shapes") in top
    helper = package["helper"].docstring.value
    assert _ref("pkgx.shapes.Square", "Square") in helper  # the import, to its definition
    assert _ref("pkgx.shapes.Square.area", "Square.area()") in helper
    assert _ref("pkgx.shapes.Square", "the square") in helper  # an explicit title
    area = package["shapes.Square.area"].docstring.value
    assert _ref("pkgx.shapes.Square.side", "side") in area  # a member of the enclosing class


def test_names_that_resolve_nowhere_stay_optional_references(tmp_path):
    package = _load(tmp_path)
    helper = package["helper"].docstring.value
    assert _ref("ValueError", "ValueError") in helper  # rendered as code, no broken link
    assert ":exc:" not in helper and ":class:" not in helper
    assert ":func:" not in package["shapes.Square.area"].docstring.value
