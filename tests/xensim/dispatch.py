"""One XML-RPC call against the world: find the message, check the session, the argument count and types and the
refs, run the handler (or start a task for ``Async.``), and wrap the outcome as xapi does::

    {"Status": "Success", "Value": ...}  or  {"Status": "Failure", "ErrorDescription": [code, *params]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.xensim import model, spec  # noqa: F401  (model: registers the handlers)
from tests.xensim.errors import XenError
from tests.xensim.registry import HANDLERS

if TYPE_CHECKING:
    from tests.xensim.world import World

#: Messages whose trailing parameters xapi lets a client leave out (the legacy forms of login).
OPTIONAL_TRAILING = {"session.login_with_password": 2}


def dispatch(world: World, method: str, params: tuple[Any, ...]) -> dict[str, Any]:
    try:
        return {"Status": "Success", "Value": _call(world, method, params)}
    except XenError as e:
        world.stats.failed(method, e.code)
        return {"Status": "Failure", "ErrorDescription": e.description}


def _lookup(world: World, method: str) -> tuple[str, dict[str, Any]]:
    name = method.removeprefix("Async.")
    cls, _, msg = name.partition(".")
    classes = spec.spec()["classes"]
    m = classes[cls]["messages"].get(msg) if cls in classes else None
    if m is None or name not in HANDLERS:
        raise XenError("MESSAGE_METHOD_UNKNOWN", method)
    if m["state"] == "removed" and not (world.config.cpu_features_settable and cls == "host"):
        raise XenError("MESSAGE_REMOVED", name)
    if method.startswith("Async.") and not HANDLERS[name].asyncable:
        raise XenError("MESSAGE_METHOD_UNKNOWN", method)
    return name, m


def _call(world: World, method: str, params: tuple[Any, ...]) -> Any:
    name, m = _lookup(world, method)
    handler = HANDLERS[name]
    expected = len(m["params"])
    least = OPTIONAL_TRAILING.get(name, expected)
    if not least <= len(params) <= expected:
        raise XenError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, expected, len(params))
    with world.store.lock:
        world.tick()
        args: list[Any] = []
        session = ""
        for (typ, pname), value in zip(m["params"], params, strict=False):
            if typ == "session ref":
                session = world.check_session(value)
                args.append(session)
            elif typ.endswith(" ref"):
                ref = spec.decode("string", value, pname)
                if not (ref == spec.NULL_REF and pname in handler.nullable):
                    world.store.get(typ[:-4], ref)
                args.append(ref)
            else:
                args.append(spec.decode(typ, value, pname))
        if method.startswith("Async."):
            return world.tasks.submit(method, handler, args, m["result"], session)
        value = handler.fn(world, *args)
        return "" if m["result"] == "void" else spec.encode(m["result"], value)
