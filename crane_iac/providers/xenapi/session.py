"""One XenAPI session per run: a ``login_with_password`` with crane as the originator, reused by every call and
logged out when the endpoint closes. The SDK's proxy is not thread-safe, so calls go through it one at a time (the
pool runs the long ones as tasks meanwhile: tasks.py).

* TLS: verified by default against the system's CAs; ``ca_cert`` names a CA or a self-signed certificate to trust,
  ``pinned_sha256`` the fingerprint the master's certificate must have (then neither its chain nor its name is
  checked: the fingerprint is the whole trust).
* An expired session (``SESSION_INVALID``): the SDK logs in again with the same credentials and retries the call.
* A dropped connection is never re-sent: a call that may have reached the pool (a clone) must not run twice. It is
  a ``ProviderError``; the next apply finds what the pool holds and converges. Reads are retried once.
* The password and the session's reference never reach a message, a log line or state: errors quote the call's
  name and XenAPI's error code and parameters only.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import socket
import ssl
import threading
import xmlrpc.client
from typing import Any
from xml.parsers.expat import ExpatError

import XenAPI

from crane_iac.errors import ProviderError

#: the API version crane asks for at login (XenServer 7.0 and later speak it)
API_VERSION = "2.0"
ORIGINATOR = "crane"
#: calls that change nothing, which may be sent again after a dropped connection
READ_PREFIXES = ("get_", "query_")
#: a socket that hears nothing for this long is a dead connection (a long call is a task, polled)
SOCKET_TIMEOUT = 120.0
#: what a call that lost its connection raises: a socket error, an HTTP error, or an answer cut short (the master
#: went down while it answered: an empty or truncated body, on which the XML-RPC parser fails)
DROPPED = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError, ExpatError)

log = logging.getLogger(__name__)


class XenApiError(ProviderError):
    """XenAPI's refusal of a call: ``code`` (``HANDLE_INVALID``, ``VM_BAD_POWER_STATE``) and its parameters."""

    def __init__(self, method: str, details: list[Any]) -> None:
        self.method = method
        self.code = str(details[0]) if details else "UNKNOWN"
        self.params = [str(d) for d in details[1:]]
        super().__init__(f"XenAPI refused {method}: {self.code}" + (f" {' '.join(self.params)}" if self.params
                                                                     else ""))


class _PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection that trusts exactly the certificate of one SHA-256 fingerprint."""

    pinned = ""

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).hexdigest() != self.pinned:
            self.close()
            raise ssl.SSLCertVerificationError(
                "the pool master's certificate does not have the fingerprint pinned_sha256 names")


class _Transport(xmlrpc.client.Transport):
    """xmlrpc's transport with a socket timeout, TLS as the settings say, and no second sending of a request
    whose connection dropped (xmlrpc.client's ``request`` re-sends once)."""

    def __init__(self, *, https: bool, context: ssl.SSLContext | None, pinned: str | None) -> None:
        super().__init__()
        self.https, self.pinned, self.tls = https, pinned, context

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection[1] is not None and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        if not self.https:
            conn: http.client.HTTPConnection = http.client.HTTPConnection(chost, timeout=SOCKET_TIMEOUT)
        elif self.pinned:
            pinned_conn = _PinnedConnection(chost, timeout=SOCKET_TIMEOUT, context=self.tls)
            pinned_conn.pinned = self.pinned
            conn = pinned_conn
        else:
            conn = http.client.HTTPSConnection(chost, timeout=SOCKET_TIMEOUT, context=self.tls)
        self._connection = host, conn
        return conn

    def request(self, host: Any, handler: str, request_body: Any, verbose: bool = False) -> Any:
        return self.single_request(host, handler, request_body, verbose)


def tls_context(*, verify: bool, ca_cert: str | None, pinned: str | None) -> ssl.SSLContext:
    """The TLS context for the master: the system's CAs (or ``ca_cert``'s), none with a pin (the pin is checked on
    each connection) or with verification off."""
    if pinned or not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_cert)


class Connection:
    """A logged-in session to a pool master, shared by the provider's threads."""

    def __init__(self, url: str, username: str, password: str, *, verify_tls: bool = True,
                 ca_cert: str | None = None, pinned_sha256: str | None = None) -> None:
        https = url.lower().startswith("https://")
        pinned = pinned_sha256.replace(":", "").lower() if pinned_sha256 else None
        context = tls_context(verify=verify_tls, ca_cert=ca_cert, pinned=pinned) if https else None
        self.url = url
        self._lock = threading.Lock()
        self._session = XenAPI.Session(url, transport=_Transport(https=https, context=context, pinned=pinned))
        self.round_trips = 0
        try:
            self._session.login_with_password(username, password, API_VERSION, ORIGINATOR)
        except XenAPI.Failure as exc:
            code = str(exc.details[0]) if exc.details else "UNKNOWN"
            raise ProviderError(f"logging in to {url} as {username!r} failed: {code}"
                                + (" (check the user and the password's source in crane.toml)"
                                   if code == "SESSION_AUTHENTICATION_FAILED" else "")) from None
        except ssl.SSLError as exc:
            why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc.args[0]
            raise ProviderError(f"the TLS connection to {url} failed: {why}; pin the pool's "
                                "certificate (ca_cert or pinned_sha256 in crane.toml) or fix its name") from None
        except DROPPED as exc:
            raise ProviderError(f"cannot reach {url}: {_reason(exc)}") from None
        self._open = True

    def call(self, method: str, *args: Any) -> Any:
        """``method`` (``VM.get_all_records``, ``Async.VM.clone``) with the session; a refusal is an
        ``XenApiError``, a dropped connection a ``ProviderError`` (a read is tried once more first)."""
        attempts = 2 if method.rpartition(".")[2].startswith(READ_PREFIXES) else 1
        for attempt in range(attempts):
            try:
                with self._lock:
                    self.round_trips += 1
                    target: Any = self._session.xenapi
                    for part in method.split("."):
                        target = getattr(target, part)
                    return target(*args)
            except XenAPI.Failure as exc:
                raise XenApiError(method, list(exc.details)) from None
            except DROPPED as exc:
                self._reset()
                if attempt + 1 < attempts:
                    log.info("connection to %s dropped during %s; reading again", self.url, method)
                    continue
                raise ProviderError(f"the connection to {self.url} dropped during {method}: {_reason(exc)}; "
                                    "run apply again: it finds what the pool holds and goes on from there") from None
            except xmlrpc.client.Fault as exc:
                raise ProviderError(f"{method} failed on {self.url}: {exc.faultString}") from None
        raise AssertionError("unreachable")

    def _reset(self) -> None:
        """Drop the HTTP connection after a failure, so that the next call opens a new one."""
        transport = self._session.transport
        if transport is not None:
            transport.close()

    def close(self) -> None:
        """Log out (once); a session the pool has forgotten, or a pool gone, is not an error here."""
        if not getattr(self, "_open", False):
            return
        self._open = False
        try:
            with self._lock:
                self._session.xenapi.session.logout()
        except (XenAPI.Failure, xmlrpc.client.Error, *DROPPED):
            pass
        finally:
            self._reset()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "no answer in time"
    if isinstance(exc, ExpatError):
        return "the answer was cut short"
    return type(exc).__name__ + (f": {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else "")
