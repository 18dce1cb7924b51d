"""Component resources: a class that builds several children under its own name.

Children of ``Component("shop")`` get addresses ``<kind>.shop/<child address>`` and
physical names prefixed ``shop-``; the component's ``depends_on`` applies to every child.
"""

from __future__ import annotations

from typing import Any

from crane_iac.resources.base import Resource
from crane_iac.resources.registry import current_registry


class Component(Resource):
    """Group children under a name. Subclasses set ``kind`` and build children in ``build``."""

    kind = "component"

    def __init__(self, name: str, /, **data: Any) -> None:
        super().__init__(name, **data)
        registry = current_registry()
        if registry is None:
            self.build()
            return
        with registry.parent(self):
            self.build()

    def __setattr__(self, name: str, value: Any) -> None:
        """Fields are validated as usual; any other attribute (a child kept for later use) is plain storage."""
        if name in type(self).model_fields or name.startswith("_"):
            super().__setattr__(name, value)
        else:
            object.__setattr__(self, name, value)

    def build(self) -> None:
        """Construct the children; called once, with this component as their parent."""

    @property
    def managed(self) -> bool:
        return False

    def properties(self) -> dict[str, Any]:
        return {}
