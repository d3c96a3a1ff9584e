"""Xenstore's wire protocol (xs_wire.h), spoken with bounds: part of the Xenstore transport.

xenstore/transport.py is this module's only user. xbctl imports no pyxs: this module speaks
the protocol pyxs speaks, with the bounds a command-line tool needs (docs/xenstore.md, "The
wire"). It owns what a CLI needs of the protocol:
the 16-byte header, payloads of at most XENSTORE_PAYLOAD_MAX bytes, request ids, one
deadline for each whole request however the bytes arrive, and watch events. There is no
reader thread: one request is outstanding at a time, and the reply is read with poll()
against the deadline, so a peer that stops, drips or lies costs at most the deadline and
a few KiB, and closing never waits on anyone.

A peer is trusted to be Xenstore only as far as it behaves like it: a header claiming more
than XENSTORE_PAYLOAD_MAX bytes, a reply of another type, request id or transaction, an
acknowledgement that is not "OK", an error that is not an error name, an event for a watch
never set: each is a protocol error (XenstoreLost), and the connection is not used again.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from enum import IntEnum

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins  # inside WireClient, list is its method: annotations there name builtins.list

# xs_wire.h: struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; } in the host's byte order.
HEADER = struct.Struct("=IIII")
XENSTORE_PAYLOAD_MAX = 4096  # xs_wire.h: no message body is longer
NUL = b"\x00"
READ_CHUNK = 16384  # bytes asked of the kernel at a time: the inbox never holds much more
MAX_PENDING_EVENTS = 1024  # distinct changed paths kept between two next_events calls
# Requests sent ahead of their answers (pipeline()): enough to hide the round trips, few
# enough that their bytes (at most this many small requests) fit any socket buffer.
MAX_IN_FLIGHT = 64
MAX_BATCH_BYTES = 16384  # and their bytes in one write
# A directory too long for one reply (E2BIG) is read in parts (XS_DIRECTORY_PART), each
# starting with the node's generation: a change between two parts starts the listing over,
# at most this many times; and no listing grows past this many bytes (32,752 domain ids
# of 5 digits are 196,512).
MAX_LISTING_RESTARTS = 16
MAX_LISTING_BYTES = 1 << 20
MAX_LISTING_PARTS = 1024  # xenstored fills each part to about 4 KiB: a peer's tiny parts end here
# Error replies carry an errno name (xsd_errors[] in xs_wire.h, plus oxenstored's EQUOTA).
ERROR_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")  # E[A-Z0-9]{1,15}
# A transaction id is a non-zero uint32 in decimal.
DECIMAL_BYTES = frozenset(b"0123456789")  # a transaction id: [1-9][0-9]{0,9}
# Xenstore error names Python's errno lacks, with what they mean.
XENSTORE_ERROR_TEXT = {"EQUOTA": "Xenstore quota exceeded"}
_ERROR_NAME_DELETE = bytes(sorted(ERROR_NAME_BYTES))
_DECIMAL_DELETE = bytes(sorted(DECIMAL_BYTES))
_OK = (b"OK\x00", b"OK")
_ERROR_TEXTS: dict[str, tuple[int, str]] = {}  # error name -> (errno, text): a list meets thousands of ENOENT


def _is_error_name(name: bytes) -> bool:
    """NAME is E followed by 1 to 15 capitals or digits, as xsd_errors[] names are."""
    # translate() deletes the allowed bytes in C: nothing left means nothing else was there.
    return 2 <= len(name) <= 16 and name[0] == ord("E") and not name[1:].translate(None, _ERROR_NAME_DELETE)


def _is_generation(text: bytes) -> bool:
    """TEXT is a node's generation as xenstored prints it: 1 to 20 digits (oxenstored: maybe signed)."""
    digits = text[1:] if text[:1] == b"-" else text
    return 1 <= len(digits) <= 20 and not digits.translate(None, _DECIMAL_DELETE)


def _is_transaction_id(text: bytes) -> bool:
    """TEXT is a decimal transaction id: 1 to 10 digits, not starting with 0."""
    return 1 <= len(text) <= 10 and text[0] != ord("0") and not text.translate(None, _DECIMAL_DELETE)


class Op(IntEnum):
    """The message types of xs_wire.h that xbctl sends or receives."""

    DIRECTORY = 1
    READ = 2
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    WRITE = 11
    RM = 13
    WATCH_EVENT = 15
    ERROR = 16
    DIRECTORY_PART = 22


KNOWN_TYPES = frozenset(int(op) for op in Op)
# Requests whose only good answer is "OK".
ACKNOWLEDGED = {Op.WATCH, Op.UNWATCH, Op.TRANSACTION_END, Op.WRITE, Op.RM}


class XenstoreLost(Exception):
    """The connection is gone, the deadline passed, or the peer broke the protocol (exit 3)."""


class XenstoreReplyError(Exception):
    """An ERROR reply from Xenstore, keeping the daemon's own error name (EQUOTA, ENOSPC...)."""

    def __init__(self, name: str) -> None:
        known = _ERROR_TEXTS.get(name)
        if known is None:
            code = getattr(errno, name, 0)
            known = _ERROR_TEXTS[name] = (
                code,
                os.strerror(code) if code else XENSTORE_ERROR_TEXT.get(name, "Xenstore error"),
            )
        code, text = known
        super().__init__(code, text)
        self.name = name
        self.text = text


def shown(raw: bytes, limit: int = 40) -> str:
    """Bytes from a peer, short and escaped, for a message (never raw to a terminal)."""
    return ascii(raw[:limit].decode("latin-1")) + ("..." if len(raw) > limit else "")


# ---------------------------------------------------------------- streams


class SocketStream:
    """A Unix socket to xenstored, non-blocking once connected."""

    def __init__(self, path: str, timeout_s: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # A blocking connect, as libxenstore's: while xenstored's listen queue is full (a
            # burst of clients, a busy daemon) it waits for room instead of failing at once
            # with EAGAIN, as a non-blocking one (settimeout) does. SO_SNDTIMEO bounds that
            # wait by the request deadline: Linux then answers EAGAIN.
            whole_s = int(timeout_s)
            self.sock.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_SNDTIMEO,
                struct.pack("@ll", whole_s, int((timeout_s - whole_s) * 1_000_000)),
            )
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_some(self, size: int) -> bytes:
        return self.sock.recv(size)

    def write_some(self, data: memoryview) -> int:
        # MSG_NOSIGNAL: a dead daemon must be EPIPE (exit 3), even when SIGPIPE is not ignored.
        return self.sock.send(data, socket.MSG_NOSIGNAL)

    def close(self) -> None:
        self.sock.close()


class DeviceStream:
    """A xenbus device (/dev/xen/xenbus): the guest kernel relays to xenstored."""

    def __init__(self, path: str) -> None:
        # O_NOCTTY: never become the controlling terminal of whatever opened us.
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK)

    def fileno(self) -> int:
        return self.fd

    def read_some(self, size: int) -> bytes:
        try:
            return os.read(self.fd, size)
        except OSError as exc:
            if exc.errno == errno.EIO:  # the other end of a terminal went away
                return b""
            raise

    def write_some(self, data: memoryview) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)


# ---------------------------------------------------------------- the client


class WireClient:
    """One connection to Xenstore: requests with a deadline each, and watch events.

    Method names follow pyxs's Client (read, write, delete, list, transaction, commit,
    rollback, tx_id), so callers read the same; paths and values are bytes.
    """

    def __init__(self, path: str, is_socket: bool, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.stream = SocketStream(path, timeout_s) if is_socket else DeviceStream(path)
        self.tx_id = 0
        self.failure: str | None = None  # why the connection may not be used again
        self._inbox = bytearray()
        # Request ids from a random start: a stray reply to another client must not pass for ours.
        self._next_id = int.from_bytes(os.urandom(4), "little") >> 1  # 31 random bits (no random module to load)
        self._tokens: set[bytes] = set()
        self._events: dict[bytes, None] = {}  # changed paths, oldest first, without repeats
        self._poller = select.poll()
        self._poller.register(self.stream.fileno(), select.POLLIN)

    # ------------------------------------------------------------ requests

    def read(self, path: bytes) -> bytes:
        """The value at PATH."""
        return self.request(Op.READ, path + NUL).rstrip(NUL)

    def list(self, path: bytes) -> list[bytes]:
        """The names of PATH's children (in parts when they do not fit one reply)."""
        try:
            payload = self.request(Op.DIRECTORY, path + NUL)
        except XenstoreReplyError as exc:
            if exc.name != "E2BIG":
                raise
            payload = self.list_in_parts(path)
        return [name for name in payload.split(NUL) if name]

    def list_in_parts(self, path: bytes) -> bytes:
        """PATH's children as XS_DIRECTORY would give them (each name NUL-terminated), read
        with XS_DIRECTORY_PART as libxenstore reads them: from byte offset 0 until a part
        ends with an empty name; every part carries the node's generation, and a part of
        another generation (the directory changed meanwhile) starts the listing over.

        A peer without XS_DIRECTORY_PART (ENOSYS) leaves the directory too long (E2BIG)."""
        for _attempt in range(MAX_LISTING_RESTARTS):
            listing = bytearray()
            generation = None
            for part in range(MAX_LISTING_PARTS + 1):
                if part == MAX_LISTING_PARTS:
                    self._break(f"protocol error: a directory listing in more than {MAX_LISTING_PARTS} parts")
                try:
                    body = self.request(Op.DIRECTORY_PART, path + NUL + str(len(listing)).encode() + NUL)
                except XenstoreReplyError as exc:
                    raise XenstoreReplyError("E2BIG") if exc.name == "ENOSYS" else exc from None
                found, names, last = self._part(body)
                if generation is None:
                    generation = found
                elif found != generation:
                    break  # changed between two parts: the offsets no longer hold
                listing += names
                if last:
                    return bytes(listing)
                if len(listing) > MAX_LISTING_BYTES:
                    self._break(f"protocol error: a directory listing of more than {MAX_LISTING_BYTES} bytes")
        raise XenstoreReplyError("EAGAIN")  # it kept changing under every listing

    def _part(self, body: bytes) -> tuple[bytes, bytes, bool]:
        """An XS_DIRECTORY_PART reply checked: (generation, names each NUL-terminated, last)."""
        generation, separator, names = body.partition(NUL)
        if not separator or not _is_generation(generation):
            self._break(f"protocol error: directory part {shown(body)} does not start with a generation")
        last = names.endswith(NUL + NUL) or names == NUL  # an empty name ends the listing
        if last:
            names = names[:-1]
        # Names are never empty, and a part that is not the last brings at least one.
        well_formed = names.endswith(NUL) and not names.startswith(NUL) and NUL + NUL not in names
        if not (well_formed or (last and not names)):
            self._break(f"protocol error: directory part {shown(body)} is no list of names")
        return generation, names, last

    def write(self, path: bytes, value: bytes) -> None:
        """Set PATH to VALUE."""
        self.request(Op.WRITE, path + NUL + value)

    def delete(self, path: bytes) -> None:
        """Remove PATH and everything below it."""
        self.request(Op.RM, path + NUL)

    def watch(self, path: bytes, token: bytes) -> None:
        """Have changes at or below PATH reported as events carrying TOKEN."""
        self._tokens.add(token)
        self.request(Op.WATCH, path + NUL + token + NUL)

    def unwatch(self, path: bytes, token: bytes) -> None:
        """Stop reporting changes at or below PATH for TOKEN."""
        self.request(Op.UNWATCH, path + NUL + token + NUL)

    def transaction(self) -> int:
        """Start a transaction; requests run inside it until commit or rollback."""
        if self.tx_id:
            raise XenstoreLost("a transaction is already open")  # a bug of ours, not the peer's
        payload = self.request(Op.TRANSACTION_START, NUL)
        text = payload.rstrip(NUL)
        if not _is_transaction_id(text) or int(text) >= 1 << 32:
            self._break(f"protocol error: transaction id {shown(payload)} is not a number")
        self.tx_id = int(text)
        return self.tx_id

    def commit(self) -> bool:
        """End the transaction, keeping its changes; False when it conflicted (EAGAIN)."""
        return self._end(b"T")

    def rollback(self) -> None:
        """End the transaction, dropping its changes."""
        self._end(b"F")

    def _end(self, how: bytes) -> bool:
        try:
            self.request(Op.TRANSACTION_END, how + NUL)
        except XenstoreReplyError as exc:
            if exc.name == "EAGAIN":
                return False
            raise
        finally:
            self.tx_id = 0
        return True

    def request(self, op: Op, payload: bytes) -> bytes:
        """Send one request and return its reply's payload, all within one deadline."""
        answer = self.pipeline([(op, payload)])[0]
        if isinstance(answer, XenstoreReplyError):
            raise answer
        return answer

    def pipeline(self, requests: builtins.list[tuple[Op, bytes]]) -> builtins.list[bytes | XenstoreReplyError]:
        """Send REQUESTS (op, payload) without waiting for each answer; their answers in order:
        each reply's payload, or the XenstoreReplyError Xenstore answered it with.

        Xenstore answers a connection's requests in the order it sent them, so answer i must
        carry request i's id, type and transaction: anything else is a protocol error. At
        most MAX_IN_FLIGHT requests (about MAX_BATCH_BYTES) are unanswered at a time (a peer
        that stops reading blocks nothing but a few KiB), and each answer has its own deadline from the moment
        the one before it came (however its bytes arrive); watch events in between are kept.
        """
        if self.failure:
            raise XenstoreLost(self.failure)
        for _op, payload in requests:
            if len(payload) > XENSTORE_PAYLOAD_MAX:
                raise XenstoreLost(f"request of {len(payload)} bytes, more than Xenstore's {XENSTORE_PAYLOAD_MAX}")
        first_id = (self._next_id + 1) & 0xFFFFFFFF
        self._next_id = (self._next_id + len(requests)) & 0xFFFFFFFF
        tx_id = self.tx_id
        answers: list[bytes | XenstoreReplyError] = []
        sent = 0
        try:
            while len(answers) < len(requests):
                deadline = time.monotonic() + self.timeout_s
                if sent - len(answers) <= MAX_IN_FLIGHT // 2 and sent < len(requests):
                    # Top the window up in one write: one system call for many requests.
                    batch = bytearray()
                    while sent < min(len(requests), len(answers) + MAX_IN_FLIGHT) and len(batch) < MAX_BATCH_BYTES:
                        op, payload = requests[sent]
                        batch += HEADER.pack(op, (first_id + sent) & 0xFFFFFFFF, tx_id, len(payload)) + payload
                        sent += 1
                    self._send(bytes(batch), deadline)
                # Every answer already here at once (at least one): one poll for many.
                for packet in self._receive_many(deadline, sent - len(answers)):
                    if packet[0] == Op.WATCH_EVENT:
                        self._note_event(packet[3])
                        continue
                    index = len(answers)
                    answers.append(self._answer(packet, requests[index][0], (first_id + index) & 0xFFFFFFFF, tx_id))
        except BaseException as exc:  # lost, too late, lied, or interrupted: never reused
            if not self.failure:
                self.failure = str(exc) if isinstance(exc, XenstoreLost) else "connection abandoned"
            raise
        return answers

    def _answer(
        self, packet: tuple[int, int, int, bytes], op: Op, rq_id: int, tx_id: int
    ) -> bytes | XenstoreReplyError:
        """PACKET checked as the answer to request RQ_ID of type OP in transaction TX_ID."""
        reply_op, reply_id, reply_tx, body = packet
        if reply_id != rq_id:
            self._break(f"protocol error: reply to request {reply_id}, expected {rq_id}")
        if reply_op == Op.ERROR:
            name = body.rstrip(NUL)
            if not _is_error_name(name):
                self._break(f"protocol error: error reply {shown(body)} is not an error name")
            return XenstoreReplyError(name.decode("ascii"))
        if reply_op != op:
            self._break(f"protocol error: reply of type {reply_op} to a request of type {int(op)}")
        if reply_tx != tx_id:
            self._break(f"protocol error: reply in transaction {reply_tx}, expected {tx_id}")
        if op in ACKNOWLEDGED and body not in _OK:
            self._break(f"protocol error: {op.name} answered {shown(body)} instead of OK")
        return body

    def _break(self, why: str) -> None:
        self.failure = why
        raise XenstoreLost(why)

    # ------------------------------------------------------------ events

    def next_events(self, timeout_s: float) -> builtins.list[bytes]:
        """The paths that changed, waiting up to TIMEOUT_S for the first (each path once)."""
        if self.failure:
            raise XenstoreLost(self.failure)
        deadline = time.monotonic() + max(0.0, timeout_s)
        try:
            while not self._events:
                packet = self._receive(deadline, give_up_quietly=True)
                if packet is None:
                    return []
                self._take_event(packet)
            # What else is already here, without waiting and without reading more than
            # one chunk: a flood must not keep us from returning.
            packet = self._receive(time.monotonic(), give_up_quietly=True, more_reads=1)
            while packet is not None:
                self._take_event(packet)
                packet = self._receive(time.monotonic(), give_up_quietly=True, more_reads=0)
        except BaseException as exc:
            if not self.failure:
                self.failure = str(exc) if isinstance(exc, XenstoreLost) else "connection abandoned"
            raise
        paths = list(self._events)
        self._events.clear()
        return paths

    def _take_event(self, packet: tuple[int, int, int, bytes]) -> None:
        if packet[0] != Op.WATCH_EVENT:
            self._break(f"protocol error: a reply of type {packet[0]} to no request")
        self._note_event(packet[3])

    def _note_event(self, body: bytes) -> None:
        parts = body.split(NUL)
        if len(parts) < 2 or not parts[0] or parts[1] not in self._tokens:
            self._break(f"protocol error: watch event {shown(body)} for no watch of ours")
        # Events are hints (the caller re-reads), so a flood costs a bounded set of paths.
        if len(self._events) < MAX_PENDING_EVENTS:
            self._events[parts[0]] = None

    # ------------------------------------------------------------ bytes

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            # Write first, wait only when told to: Linux's xenbus device never reports
            # POLLOUT (its poll() knows only POLLIN), though a write always goes through.
            try:
                sent = self.stream.write_some(view)
            except (BlockingIOError, InterruptedError):
                self._wait(select.POLLOUT, deadline)
                continue
            except OSError as exc:
                raise XenstoreLost(f"connection lost ({exc.strerror or exc})") from None
            view = view[sent:]

    def _receive(
        self, deadline: float, *, give_up_quietly: bool = False, more_reads: int | None = None
    ) -> tuple[int, int, int, bytes] | None:
        """The next whole message, read by the DEADLINE.

        When the deadline passes, None if GIVE_UP_QUIETLY else XenstoreLost. MORE_READS,
        when given, bounds how many reads from the kernel this call may make.
        """
        while True:
            if len(self._inbox) >= HEADER.size:
                op, rq_id, tx_id, size = HEADER.unpack_from(self._inbox)
                if size > XENSTORE_PAYLOAD_MAX:
                    # Never allocated, never waited for: no Xenstore message is this long.
                    self._break(
                        f"protocol error: a message of {size} bytes announced "
                        f"(Xenstore's limit is {XENSTORE_PAYLOAD_MAX}); is this Xenstore?"
                    )
                if op not in KNOWN_TYPES:
                    self._break(f"protocol error: unknown message type {op}; is this Xenstore?")
                end = HEADER.size + size
                if len(self._inbox) >= end:
                    body = bytes(self._inbox[HEADER.size : end])
                    del self._inbox[:end]
                    return op, rq_id, tx_id, body
            if more_reads is not None:
                if more_reads <= 0:
                    return None
                more_reads -= 1
            if not self._wait(select.POLLIN, deadline, quietly=give_up_quietly):
                return None
            try:
                data = self.stream.read_some(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise XenstoreLost(f"connection lost ({exc.strerror or exc})") from None
            if not data:
                raise XenstoreLost("connection lost" + (" in the middle of a reply" if self._inbox else ""))
            self._inbox += data

    def _receive_many(self, deadline: float, replies: int) -> builtins.list[tuple[int, int, int, bytes]]:
        """The whole messages already here, with at most REPLIES that are not watch events
        (what follows them stays for the next request); when none is, the next one, waited
        for by the DEADLINE."""
        inbox = self._inbox
        packets = []
        offset, available = 0, len(inbox)
        while replies and available - offset >= HEADER.size:
            op, rq_id, tx_id, size = HEADER.unpack_from(inbox, offset)
            if size > XENSTORE_PAYLOAD_MAX or op not in KNOWN_TYPES:
                break  # _receive says what is wrong with it, once it is first
            end = offset + HEADER.size + size
            if end > available:
                break
            packets.append((op, rq_id, tx_id, bytes(inbox[offset + HEADER.size : end])))
            if op != Op.WATCH_EVENT:
                replies -= 1
            offset = end
        if offset:
            del inbox[:offset]
        # Neither quietly nor with a bound on reads, _receive raises rather than return None.
        return packets or [self._receive(deadline)]  # type: ignore[list-item]

    def _wait(self, events: int, deadline: float, *, quietly: bool = False) -> bool:
        """Wait until the stream is ready for EVENTS; False (QUIETLY) or XenstoreLost at DEADLINE."""
        self._poller.modify(self.stream.fileno(), events)
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 and not quietly:
                raise XenstoreLost(f"no reply within {self.timeout_s:g} s")
            ready = self._poller.poll(max(0, int(remaining_s * 1000 + 0.999)))
            if ready:
                return True  # readable, writable, hung up or failed: the read or write tells which
            if remaining_s <= 0 or time.monotonic() >= deadline:
                if quietly:
                    return False
                raise XenstoreLost(f"no reply within {self.timeout_s:g} s")

    def close(self) -> None:
        """Close the connection at once; xenstored ends any transaction left open on it."""
        if self.failure is None:
            self.failure = "connection closed"
        self.tx_id = 0
        self.stream.close()
