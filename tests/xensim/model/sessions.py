"""Sessions: ``session.login_with_password`` and ``session.logout``.

The password is checked against the simulator's (random per run); a wrong one is
``SESSION_AUTHENTICATION_FAILED``. xapi also accepts the legacy two- and three-argument forms of
``login_with_password`` (without version and originator), and so does the simulator. A session ends at logout,
at ``faults.expire_sessions()``, when idle longer than ``PoolSpec.session_ttl``, or when the master restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.xensim.errors import XenError
from tests.xensim.registry import message
from tests.xensim.spec import now_stamp

if TYPE_CHECKING:
    from tests.xensim.world import World


@message("session.login_with_password")
def login_with_password(w: World, uname: str, pwd: str, version: str = "", originator: str = "") -> str:
    if uname != w.username or pwd != w.password:
        raise XenError("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    ref = w.store.create("session", this_host=w.master, last_active=now_stamp(), validation_time=now_stamp(),
                         pool=False, is_local_superuser=True, auth_user_name=uname, originator=originator)
    w.session_seen[ref] = w.clock.now()
    return ref


@message("session.logout")
def logout(w: World, session: str) -> None:
    w.store.destroy("session", session)
    w.session_seen.pop(session, None)
