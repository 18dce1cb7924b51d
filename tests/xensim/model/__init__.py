"""The pool's semantics, one module per class family; importing this package registers every handler, the
generated accessors last (they fill in what the class modules left to them)."""

from tests.xensim.model import guests, host, memory, network, sessions, storage, tasks, vmcopy, vms  # noqa: F401
from tests.xensim.model.accessors import register_accessors

register_accessors()
