"""Griffe extension: rxsweep's docstrings name objects with Sphinx roles (:func:`x`, :class:`X`,
:meth:`X.y`); Markdown has no roles, so the Reference pages would show ":func:" before the name.
Each role is dropped and its target kept as inline code, with the double backticks of reST
literals (``x``) made single. The source files are not changed."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`~?([^`]+)`")
LITERAL = re.compile(r"``([^`]+)``")


class RstRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = LITERAL.sub(r"`\1`", ROLE.sub(r"`\1`", obj.docstring.value))
