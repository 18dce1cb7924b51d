"""A griffe extension for the docs' resource reference: a field's ``#:`` comment lines become its docstring.

crane's models document their fields with ``#:`` comments above them (Sphinx's convention); griffe reads only
docstrings, so without this the generated reference would show those fields bare.
"""

from __future__ import annotations

from typing import Any

import griffe


class FieldComments(griffe.Extension):
    def on_attribute_instance(self, *, attr: griffe.Attribute, **_: Any) -> None:
        if attr.docstring is not None or attr.lineno is None:
            return
        lines = attr.module.lines
        comment: list[str] = []
        row = attr.lineno - 2  # the line above the attribute, 0-based
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        if comment:
            attr.docstring = griffe.Docstring("\n".join(comment), parent=attr)
