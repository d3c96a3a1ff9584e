"""The exporter's HTTP server: bounded in threads, descriptors and time, whatever its clients do.

One thread (the caller's) accepts connections and reads each request head without blocking;
a request whose head is complete goes to a worker thread, at most MAX_REQUESTS of them, which
answers it and closes the connection. Nothing a client does can end the process or hold it:
  - a client has CLIENT_TIMEOUT_S to send its request head, and as long again to take the
    answer (a total for each, not per packet, so a byte a second does not keep it open);
  - at most MAX_CONNECTIONS connections are open at once; past that the exporter stops
    accepting until one closes, and new ones wait in the kernel's listen queue, which costs
    the process no descriptor (so its own Xenstore connection always finds one);
  - every write is MSG_NOSIGNAL: a client that hung up is an error on its connection alone.
Concurrent scrapes share walks (SharedWalk): one walk at a time, so one Xenstore connection.
prometheus_client is not needed here: the page comes from the caller.
"""

from __future__ import annotations

import errno
import io
import selectors
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from .errors import usage_error

# node_exporter's --web.max-requests is 40 too; it answers 503 past it, we let scrapes queue.
DEFAULT_MAX_REQUESTS = 40
# Well below systemd's default descriptor limit (1024), leaving room for Xenstore and the rest.
DEFAULT_MAX_CONNECTIONS = 256
# Prometheus' default scrape_timeout: a scrape that has not sent its request by then has failed.
DEFAULT_CLIENT_TIMEOUT_S = 10.0
RESERVED_DESCRIPTORS = 64  # besides the connections: Xenstore, libxenctrl, std streams, the selector
# Each connection's send buffer, fixed (the kernel doubles it; autotuning would let it grow to
# 4 MiB): readers that stall hold at most 256 x 512 KiB of kernel memory, and a stalled reader
# stalls the writer, whose deadline then ends it. Enough for a LAN's bandwidth-delay product.
SEND_BUFFER_BYTES = 256 * 1024
MAX_HEAD_BYTES = 16 * 1024  # a request line and headers; Prometheus sends a few hundred bytes
POLL_S = 0.25  # how often the accepting thread looks up, so SIGINT is seen promptly
# The text exposition format generate_latest() writes, in every prometheus_client version.
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LANDING = (
    b"<html><head><title>xbctl exporter</title></head><body>"
    b'<h1>xbctl exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>\n'
)


class Limits:
    """How much of the process the clients may hold, and for how long."""

    __slots__ = ("max_requests", "max_connections", "client_timeout_s")

    def __init__(
        self,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
    ) -> None:
        self.max_requests = max_requests
        self.max_connections = max_connections
        self.client_timeout_s = client_timeout_s


def ensure_descriptors(max_connections: int) -> None:
    """Raise the soft descriptor limit (as Go programs do) so MAX_CONNECTIONS clients leave room
    for the exporter's own; exit 2 when even the hard limit is too low."""
    import resource

    needed = max_connections + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise usage_error(
            f"--max-connections {max_connections}: needs {needed} descriptors, the limit is {hard}",
            hint=f"at most --max-connections {max(hard - RESERVED_DESCRIPTORS, 0)}, or raise LimitNOFILE",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class SharedWalk:
    """PRODUCE() run for concurrent callers: one run at a time, each caller answered by the first
    run that started after it asked (so a scrape never gets values read before it arrived)."""

    def __init__(self, produce) -> None:
        self._produce = produce
        self._changed = threading.Condition()
        self._started = 0  # runs begun
        self._finished = 0  # number of the run whose outcome is kept
        self._running = False
        self._outcome: tuple = (b"", None)

    def __call__(self) -> bytes:
        """The outcome of a run that started after this call."""
        with self._changed:
            wanted = self._started + 1
            while self._finished < wanted:
                if not self._running:
                    self._started += 1
                    self._running = True
                    number = self._started
                    break
                self._changed.wait()
            else:
                return self._result(self._outcome)
        try:
            outcome: tuple = (self._produce(), None)
        except Exception as exc:  # noqa: BLE001 - handed to every caller that waited for this run
            outcome = (b"", exc)
        with self._changed:
            self._finished, self._running, self._outcome = number, False, outcome
            self._changed.notify_all()
        return self._result(outcome)

    @staticmethod
    def _result(outcome: tuple) -> bytes:
        page, error = outcome
        if error is not None:
            raise RuntimeError(f"{type(error).__name__}: {error}")
        return page


class _Handler(BaseHTTPRequestHandler):
    """One request, its head already read (request = (socket, head)); the answer is sent whole."""

    server_version = "xbctl-exporter"
    default_request_version = "HTTP/1.0"  # a garbled request line gets a status line too (no HTTP/0.9)
    # Handed xbctl's own Server (no socketserver.BaseServer); setup() makes wfile a buffer.
    server: Server  # type: ignore[assignment]
    wfile: io.BytesIO

    def version_string(self) -> str:
        return self.server_version  # no Python version for the world to see

    def setup(self) -> None:
        self.connection, head = self.request
        self.rfile = io.BytesIO(head)
        self.wfile = io.BytesIO()  # sent in finish(), at once, under one deadline

    def finish(self) -> None:
        answer = self.wfile.getvalue()
        if answer:
            self.connection.settimeout(self.server.limits.client_timeout_s)
            # sendall's timeout bounds the whole answer; MSG_NOSIGNAL: a hang-up is EPIPE, never SIGPIPE.
            self.connection.sendall(answer, socket.MSG_NOSIGNAL)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urlsplit(self.path).path
        if path == "/metrics":
            try:
                body = self.server.page()
            except Exception as exc:  # noqa: BLE001 - a bug in a walk is a 500, not a dead exporter
                self.server.log(f"scrape failed: internal error: {exc}")
                self.send_error(500)
                return
            self._answer(body, METRICS_TYPE)
        elif path == "/":
            self._answer(LANDING, "text/html; charset=utf-8")
        else:
            self.send_error(404)

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        """No access log: a scrape every 15 s would flood the journal."""


class Server:
    """Serves PAGE() at /metrics on a listening socket, within LIMITS, until interrupted."""

    def __init__(self, host: str, port: int, page, limits: Limits, log=None) -> None:
        self.page = page
        self.limits = limits
        self._log = log
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.listener = socket.socket(family, kind, proto)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(address)
            self.listener.listen(socket.SOMAXCONN)
            self.listener.setblocking(False)
        except OSError:
            self.listener.close()
            raise
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open = 0  # connections accepted and not yet closed
        self._ready: deque = deque()  # (socket, head) waiting for a worker
        self._workers = 0
        self._acceptor: int | None = None  # the thread in serve_forever
        # Written by a worker that frees a connection, so a paused accept resumes at once.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def log(self, message: str) -> None:
        """MESSAGE to the log; a log that cannot be written never fails a scrape."""
        if self._log is not None:
            try:
                self._log(message)
            except (OSError, ValueError):
                pass

    def serve_forever(self) -> None:
        """Accept, read heads, hand them to workers; returns only by an exception (KeyboardInterrupt)."""
        self._acceptor = threading.get_ident()
        selector = selectors.DefaultSelector()
        reading: dict[socket.socket, tuple[float, bytearray]] = {}  # in accept order, so in deadline order
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        accepting = False
        resume_at = 0.0  # after the process ran out of descriptors: try again then
        try:
            while True:
                now = time.monotonic()
                with self._lock:
                    room = self.limits.max_connections - self._open
                want = room > 0 and now >= resume_at
                if want != accepting:
                    if want:
                        selector.register(self.listener, selectors.EVENT_READ, "accept")
                    else:
                        selector.unregister(self.listener)
                    accepting = want
                timeout = POLL_S
                if reading:
                    timeout = min(timeout, max(0.0, next(iter(reading.values()))[0] - now))
                if resume_at > now:
                    timeout = min(timeout, resume_at - now)
                for key, _events in selector.select(timeout):
                    if key.data == "accept":
                        resume_at = self._accept(selector, reading, room)
                    elif key.data == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    else:
                        self._read(selector, reading, key.fileobj)  # type: ignore[arg-type]  # a client's socket
                self._expire(selector, reading)
        finally:
            for connection in list(reading):
                self._close(connection)
            selector.close()
            self.listener.close()

    def _accept(self, selector, reading: dict, room: int) -> float:
        """Accept up to ROOM waiting connections; when to try again if descriptors ran out (else 0)."""
        for _ in range(room):
            try:
                connection, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return 0.0
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Leave the rest in the listen queue until a descriptor is free again.
                    return time.monotonic() + POLL_S
                continue  # ECONNABORTED and the like: that client is gone
            connection.setblocking(False)
            try:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            except OSError:
                pass  # the kernel's own size then
            with self._lock:
                self._open += 1
            reading[connection] = (time.monotonic() + self.limits.client_timeout_s, bytearray())
            selector.register(connection, selectors.EVENT_READ, "read")
        return 0.0

    def _read(self, selector, reading: dict, connection: socket.socket) -> None:
        """Take what CONNECTION sent; hand it to a worker once its head is complete."""
        _deadline, head = reading[connection]
        try:
            data = connection.recv(MAX_HEAD_BYTES + 1 - len(head))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # hung up before its request was complete
            selector.unregister(connection)
            del reading[connection]
            self._close(connection)
            return
        head += data
        if b"\r\n\r\n" in head or b"\n\n" in head:
            selector.unregister(connection)
            del reading[connection]
            self._dispatch(connection, bytes(head))
        elif len(head) > MAX_HEAD_BYTES:
            selector.unregister(connection)
            del reading[connection]
            self._refuse(connection, b"431 Request Header Fields Too Large")

    def _expire(self, selector, reading: dict) -> None:
        """Close the connections whose request head is late (408, if they still listen)."""
        now = time.monotonic()
        while reading:
            connection, (deadline, _head) = next(iter(reading.items()))
            if deadline > now:
                return
            selector.unregister(connection)
            del reading[connection]
            self._refuse(connection, b"408 Request Timeout")

    def _refuse(self, connection: socket.socket, status: bytes) -> None:
        try:
            connection.send(
                b"HTTP/1.0 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", socket.MSG_NOSIGNAL
            )
        except OSError:
            pass  # gone, or not reading: it is closed all the same
        self._close(connection)

    def _dispatch(self, connection: socket.socket, head: bytes) -> None:
        with self._lock:
            self._ready.append((connection, head))
            if self._workers >= self.limits.max_requests:
                return  # a busy worker takes it next
            self._workers += 1
        threading.Thread(target=self._work, name="xbctl-exporter-request", daemon=True).start()

    def _work(self) -> None:
        """Answer requests until none waits, then end (an idle exporter has no worker thread)."""
        while True:
            with self._lock:
                if not self._ready:
                    self._workers -= 1
                    return
                connection, head = self._ready.popleft()
            try:
                address = connection.getpeername()
            except OSError:
                address = ("", 0)
            try:
                _Handler((connection, head), address, self)  # type: ignore[arg-type]  # the server it uses: this one
            except OSError:
                pass  # a client that hung up or stalled: its connection alone ends
            except Exception as exc:  # noqa: BLE001 - a bug answering one request must not end the rest
                self.log(f"request failed: internal error: {type(exc).__name__}: {exc}")
            finally:
                self._close(connection)

    def _close(self, connection: socket.socket) -> None:
        connection.close()
        with self._lock:
            self._open -= 1
            paused = self._open == self.limits.max_connections - 1
        if paused and threading.get_ident() != self._acceptor:
            try:
                self._wake_w.send(b"!")
            except OSError:
                pass  # a byte is already waiting: the accepting thread wakes anyway

    def close(self) -> None:
        """Release the wake-up pair (the listener closes when serve_forever ends)."""
        self._wake_r.close()
        self._wake_w.close()
        self.listener.close()
