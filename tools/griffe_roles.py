"""Griffe extension of the API reference: the docstrings' Sphinx roles become cross-references.

The docstrings name other objects the way Sphinx does (``:func:`open_month```,
``:class:`~core.storage.Store```, ``:mod:`gee_export.ee```), which MkDocs would
print as text. Once a package is loaded, every role in every docstring is rewritten into an
``<autoref>`` of mkdocs-autorefs with the role's target resolved the way Python would see the
name from that docstring (its object, the enclosing class and module, their imports), so the
site shows a link. Each one is ``optional``: a target the reference does not render (a private
helper, an object of another library) shows as code instead of failing the strict build.
The docstrings themselves stay readable in an editor and in ``help()``.
"""

from __future__ import annotations

import html
import re

import griffe

# :func:`name`, :class:`~pkg.mod.Name`, :py:meth:`Cls.m`, :class:`title <pkg.mod.Name>` ...
ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?:(?P<title>[^`<]+?)\s*<(?P<explicit>[^`>]+)>"
                  r"|(?P<target>[^`<>]+?))`")


def _identifier(obj: griffe.Object, name: str, loader: griffe.GriffeLoader) -> str:
    """The full path that ``name`` means in ``obj``'s docstring (itself when not resolvable)."""
    head, _, rest = name.partition(".")
    try:
        path = obj.resolve(head)
        full = f"{path}.{rest}" if rest else path
    except griffe.NameResolutionError:
        full = name
    try:
        return loader.modules_collection.get_member(full).canonical_path
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return full


def rewrite(text: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    """``text`` with each Sphinx role replaced by an optional autorefs cross-reference."""

    def replace(match: re.Match[str]) -> str:
        target = (match["target"] or match["explicit"]).strip()
        short = target.startswith("~")
        name = target.lstrip("~.")
        if match["title"]:
            shown = " ".join(match["title"].split())
        else:
            shown = name.rsplit(".", 1)[-1] if short else name
            if match["role"] in {"func", "meth"}:
                shown += "()"
        identifier = _identifier(obj, name, loader)
        return (f'<autoref identifier="{html.escape(identifier)}" optional>'
                f"<code>{html.escape(shown)}</code></autoref>")

    return ROLE.sub(replace, text)


def _walk(obj: griffe.Object, seen: set[int]):
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member, seen)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader,
                   **kwargs) -> None:
        for obj in _walk(pkg, set()):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = rewrite(obj.docstring.value, obj, loader)
