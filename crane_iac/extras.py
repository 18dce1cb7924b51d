"""The optional parts of crane and the extras that install them: the engine and the sandbox need none of them, and a
capability whose package is missing is a ``CraneError`` naming the extra to install, never an ImportError.

    pip install 'crane_iac[postgres]'    PostgreSQL state (psycopg 3)
    pip install 'crane_iac[ansible]'     configuration runs and app domains (ansible-core, ansible-runner)
    pip install 'crane_iac[autoscale]'   the autoscaler's Prometheus metrics (prometheus-client)
    pip install 'crane_iac[watch]'       `crane watch` (watchdog)
    pip install 'crane_iac[xenapi]'      XenServer / XCP-ng endpoints (XenAPI, the official SDK)
    pip install 'crane_iac[all]'         all of them (scripts/install.sh installs everything)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from crane_iac.errors import CraneError

#: import name → the extra that installs it
EXTRAS = {"psycopg": "postgres", "ansible_runner": "ansible", "prometheus_client": "autoscale",
          "watchdog": "watch", "XenAPI": "xenapi"}


class MissingExtraError(CraneError):
    """A capability needs a package this installation left out."""


def require(module: str, what: str) -> ModuleType:
    """``module`` imported, or a MissingExtraError saying that ``what`` needs the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module.partition(".")[0], "all")
        raise MissingExtraError(f"{what} needs the Python package {module!r}, which this installation of crane "
                                f"leaves out: pip install 'crane_iac[{extra}]' (or scripts/install.sh, which installs "
                                "everything)") from None
