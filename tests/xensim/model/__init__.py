"""The pool's semantics, one module per class family; importing this package registers every handler."""

from tests.xensim.model import (  # noqa: F401
    accessors,
    guests,
    host,
    memory,
    network,
    sessions,
    storage,
    tasks,
    vmcopy,
    vms,
)
