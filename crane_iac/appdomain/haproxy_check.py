"""Checks a rendered haproxy.cfg with the real HAProxy (``haproxy -c``), so a configuration HAProxy would refuse is
found when the stack is loaded, not when the load balancer restarts.

``haproxy -c`` parses and resolves everything but binds nothing and creates no socket, so the admin socket's and
the state file's directories (in the load balancer's container) need not exist here; a missing state file is
only a warning.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from crane_iac.errors import CraneError

#: where Debian puts it, for users whose PATH lacks /usr/sbin
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_ALERT = re.compile(r"^\[ALERT\]\s*\(\d+\)\s*:\s*(?:config\s*:\s*)?(.*)$")
#: the last, summary alerts: they add nothing to the ones before them
_SUMMARIES = ("Error(s) found in configuration file", "Fatal errors found in configuration")
CONFIG_NAME = "haproxy.cfg"


class HAProxyUnavailableError(CraneError):
    """No haproxy program to check a load balancer's configuration with."""


def find_haproxy() -> str:
    """The haproxy program on PATH or in /usr/sbin; HAProxyUnavailableError says how to install it."""
    found = shutil.which("haproxy", path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))
    if found is None:
        raise HAProxyUnavailableError("haproxy is not installed here (it checks app domains' load balancer "
                                      "configuration): run scripts/install.sh, which installs Debian's haproxy")
    return found


def check_haproxy_config(text: str, *, haproxy: str | None = None) -> list[str]:
    """HAProxy's own error lines for configuration ``text`` (``parsing [haproxy.cfg:12] : ...``), or [] if HAProxy
    accepts it."""
    program = haproxy or find_haproxy()
    with tempfile.TemporaryDirectory(prefix="crane-haproxy-") as tmp:
        path = Path(tmp) / CONFIG_NAME
        path.write_text(text)
        try:
            done = subprocess.run([program, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL, cwd=tmp)
        except FileNotFoundError:
            raise HAProxyUnavailableError(f"{program} does not exist: run scripts/install.sh, which installs "
                                          "Debian's haproxy") from None
    if done.returncode == 0:
        return []
    output = (done.stderr + done.stdout).replace(str(path), CONFIG_NAME)
    errors = []
    for line in output.splitlines():
        alert = _ALERT.match(line)
        if alert and not alert.group(1).startswith(_SUMMARIES):
            errors.append(alert.group(1).strip())
    return errors or [line for line in output.splitlines() if line.strip()][-5:] or [
        f"haproxy -c exited with {done.returncode} and said nothing"]
