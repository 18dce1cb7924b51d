"""The one place crane reaches into pydantic's internals, and why. Pydantic 2 keeps a model's field values in
``__dict__``, which fields were given in ``__pydantic_fields_set__`` and private attributes in
``__pydantic_private__``; these are stable in pydantic 2 but not public API, so a pydantic upgrade is checked here
first (tests/resources pin the behaviour: an invalid resource still records its diagnostics, and its bookkeeping
reads back).

- ``become_unvalidated``: a resource whose fields are invalid must still exist (its diagnostics are collected and
  the stack keeps running, so every error of a stack is reported at once): it takes the unvalidated values of
  ``model_construct`` in place, since ``__init__`` cannot return another object.
- ``private_value``: reading a private attribute through ``BaseModel.__getattr__`` costs more than the rest of
  loading a resource; a 10,000-resource stack reads crane's bookkeeping several times per resource.
- ``set_private``: an undeclared private value, set after validation. A declared ``PrivateAttr`` makes pydantic
  wrap ``model_post_init`` to initialise it on every construction (once per class in the hierarchy), a third of
  what building a resource costs; undeclared, the store is None after validation and this creates it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def become_unvalidated(model: BaseModel, **data: Any) -> None:
    """Give ``model`` the fields of ``type(model).model_construct(**data)``: the values as given, unvalidated."""
    placeholder = type(model).model_construct(**data)
    object.__setattr__(model, "__dict__", placeholder.__dict__)
    object.__setattr__(model, "__pydantic_fields_set__", placeholder.__pydantic_fields_set__)
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", dict(placeholder.__pydantic_private__ or {}))


def private_value(model: BaseModel, name: str) -> Any:
    """The private attribute ``name`` of ``model`` (None when unset), read from pydantic's store directly."""
    private = model.__pydantic_private__
    return private.get(name) if private is not None else None


def set_private(model: BaseModel, name: str, value: Any) -> None:
    """Set the private value ``name`` of ``model`` (read back with ``private_value``) without pydantic declaring it."""
    private = model.__pydantic_private__
    if private is None:
        object.__setattr__(model, "__pydantic_private__", {name: value})
    else:
        private[name] = value
