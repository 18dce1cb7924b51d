"""The XML-RPC endpoint: a threaded HTTP/1.1 server on 127.0.0.1 (HTTPS when given a certificate), one thread per
connection, kept-alive connections as xapi allows. It can stop and start again on the same port (a pool master
restarting): stopping closes the listening socket and every open connection.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import ssl
import threading
import xmlrpc.client
from typing import TYPE_CHECKING, Any

from tests.xensim.dispatch import dispatch

if TYPE_CHECKING:
    from tests.xensim.world import World


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        world = self.server.world
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        except Exception:
            self.send_error(400, "not an XML-RPC request")
            return
        method = method or ""
        world.stats.count(method)
        drop = world.faults.take_drop(method)
        if drop == "before":
            self._drop()
            return
        try:
            response = dispatch(world, method, params)
        except Exception as e:  # a simulator bug: answer as xapi answers its own
            world.stats.failed(method, "INTERNAL_ERROR")
            response = {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", repr(e)]}
        if drop == "after":
            self._drop()
            return
        if drop == "headers":  # the answer's headers, then nothing: the master went down while it answered
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.end_headers()
            self.wfile.flush()
            self._drop()
            return
        data = xmlrpc.client.dumps((response,), methodresponse=True, allow_none=True).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    world: World

    def __init__(self, port: int, world: World, tls: ssl.SSLContext | None) -> None:
        self.world = world
        self._tls = tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Endpoint:
    """The server for one world: ``start()`` (on ``port``, 0 for an ephemeral one the first time), ``stop()``."""

    def __init__(self, world: World, tls: ssl.SSLContext | None = None) -> None:
        self._world = world
        self._tls = tls
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        server = _Server(self.port, self._world, self._tls)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"xensim-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        server.close_all()
        thread.join()
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None
