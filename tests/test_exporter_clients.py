"""`xbctl exporter` against clients that misbehave: it survives them all and gives back what they held.

The installed xbctl serves a real xenstored (or a big simulated host); clients over loopback
hang up before, during and after the answer, leave requests half-sent by the thousand, trickle
a head a byte at a time, never read their answer, scrape 200 at once, and scrape while xenstored
restarts. After each, the exporter answers with data, and its descriptors (/proc/PID/fd) and
threads (/proc/PID/task) return to their idle count. Every load is bounded in count and time
and goes to 127.0.0.1 only. The exporter runs under systemd's default descriptor limit (1024).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
from conftest import assert_clean_failure
from xen_fixtures import lay_out_host

SYSTEMD_NOFILE = 1024  # a service's soft descriptor limit unless its unit says otherwise
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_REQUESTS = 40
OWN_DESCRIPTORS = 16  # besides client connections: std streams, listener, selector, wake pair, Xenstore
HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n"
WAIT_S = 60  # the bound on every wait below; none is a timing assertion


def systemd_nofile() -> None:
    """In the exporter before it runs: the descriptor limit a systemd service gets by default."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SYSTEMD_NOFILE, hard))


@pytest.fixture(autouse=True)
def room_for_clients():
    """This test process opens up to 1,000 client sockets at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Exporter:
    """One `xbctl exporter` process on a free loopback port; its stderr read as it comes."""

    def __init__(self, popen, *args: str) -> None:
        self.port = free_port()
        self.process = popen("exporter", "--listen", f"127.0.0.1:{self.port}", *args, preexec_fn=systemd_nofile)
        self.pid = self.process.pid
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + WAIT_S
        while not any("serving metrics at" in line for line in self.stderr):
            assert self.process.poll() is None, ("the exporter ended", self.process.returncode, self.stderr)
            assert time.monotonic() < deadline, ("the exporter never said it serves", self.stderr)
            time.sleep(0.02)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)

    def alive(self) -> None:
        assert self.process.poll() is None, ("the exporter ended", self.process.returncode, self.stderr)

    def resources(self) -> tuple[int, int]:
        """(open descriptors, threads) of the exporter now."""
        self.alive()
        return len(os.listdir(f"/proc/{self.pid}/fd")), len(os.listdir(f"/proc/{self.pid}/task"))

    def idle(self) -> tuple[int, int]:
        """Its resources once it has no request left: the same in ten looks in a row."""
        deadline = time.monotonic() + WAIT_S
        looks = [self.resources()]
        while len(looks) < 10 or len(set(looks[-10:])) > 1:
            assert time.monotonic() < deadline, ("the exporter never settled", looks[-10:])
            time.sleep(0.05)
            looks.append(self.resources())
        return looks[-1]

    def back_to(self, idle: tuple[int, int]) -> None:
        """Wait (bounded) until its descriptors and threads are IDLE again."""
        deadline = time.monotonic() + WAIT_S
        while (now := self.resources()) != idle:
            assert time.monotonic() < deadline, ("descriptors, threads held after the clients left", now, idle)
            time.sleep(0.05)

    def scrape(self) -> str:
        """One scrape over a fresh connection: the answer's body (status 200 asserted)."""
        status, body = http_get(self.port)
        assert status == 200, (status, body[:500], self.stderr)
        return body

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)
            self.process.wait(timeout=WAIT_S)
        self._reader.join(timeout=WAIT_S)
        assert self.process.returncode == 0, (self.process.returncode, self.stderr)


def http_get(port: int, path: str = "/metrics") -> tuple[int, str]:
    """(status, body) of GET PATH, read to the end of the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as client:
        client.sendall(HEAD.replace(b"/metrics", path.encode()))
        return parse_answer(read_all(client))


def read_all(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_answer(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    assert match, answer[:300]
    return int(match.group(1)), body.decode()


def has_data(page: str, domains=("Domain-0", "web", "db")) -> None:
    """PAGE has every domain's target and no scrape error."""
    assert 'xen_balloon_scrape_error{error=""} 0.0' in page, page[-2000:]
    for domain in domains:
        assert re.search(rf'^xen_balloon_target_bytes\{{domain="{domain}"\}} \d', page, re.M), page[:2000]


@pytest.fixture
def exporters():
    started: list[Exporter] = []

    def start(popen, *args: str) -> Exporter:
        started.append(Exporter(popen, *args))
        return started[-1]

    yield start
    for exporter in started:
        if exporter.process.poll() is None:
            exporter.process.send_signal(2)
            exporter.process.wait(timeout=WAIT_S)


@pytest.fixture
def big_sim(xbctl):
    """A simulated host of 2,000 guests: its page is about 1.8 MB, long enough to hang up in."""
    assert xbctl("sim", "reset", "--guests", "2000").status == 0
    env = xbctl.process_env()

    return lambda *args, **kwargs: spawn_xbctl(env, *args, **kwargs)


def spawn_xbctl(env: dict, *args: str, **kwargs) -> subprocess.Popen:
    """The installed xbctl with ARGS in ENV, its output piped as text."""
    return subprocess.Popen(
        ["xbctl", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def reset_after(client: socket.socket) -> None:
    """Close CLIENT with a reset (RST), as a client killed mid-scrape does."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def hang_up(port: int, how: str) -> None:
    """One client that gives up at the point HOW."""
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    if how == "before the request":
        client.close()
    elif how == "in the middle of the request":
        client.sendall(HEAD[:20])
        client.close()
    elif how == "after the request":  # Prometheus past its scrape_timeout: FIN, the answer unread
        client.sendall(HEAD)
        client.close()
    elif how == "after the request, with a reset":
        client.sendall(HEAD)
        reset_after(client)
    elif how == "after shutting down both ways":
        client.sendall(HEAD)
        client.shutdown(socket.SHUT_RDWR)
        client.close()
    elif how == "during the answer":
        client.sendall(HEAD)
        assert client.recv(100).startswith(b"HTTP/1.0 200 ")
        client.close()
    elif how == "during the answer, with a reset":
        client.sendall(HEAD)
        assert client.recv(100).startswith(b"HTTP/1.0 200 ")
        reset_after(client)
    elif how == "after the answer":
        client.sendall(HEAD)
        assert read_all(client).startswith(b"HTTP/1.0 200 ")
        client.close()
    else:
        raise AssertionError(how)


HANG_UPS = [
    "before the request",
    "in the middle of the request",
    "after the request",
    "after the request, with a reset",
    "after shutting down both ways",
    "during the answer",
    "during the answer, with a reset",
    "after the answer",
]


@pytest.mark.parametrize("how", HANG_UPS)
def test_a_client_that_hangs_up_never_ends_the_exporter(big_sim, exporters, how):
    exporter = exporters(big_sim)
    has_data(exporter.scrape())
    idle = exporter.idle()
    for _ in range(10):  # the first one used to end it (SIGPIPE); ten, one after another
        hang_up(exporter.port, how)
    exporter.alive()
    has_data(exporter.scrape())
    exporter.back_to(idle)
    exporter.stop()
    assert not [line for line in exporter.stderr if "serving metrics" not in line], exporter.stderr


def test_a_thousand_half_sent_requests_are_bounded_then_dropped(xs, exporters):
    exporter = exporters(xs.popen, "--client-timeout", "2")
    has_data(exporter.scrape())
    idle_fds, idle_threads = exporter.idle()
    clients = []
    try:
        for _ in range(1000):  # connected at once (the listen queue takes what is not accepted yet)
            client = socket.socket()
            client.setblocking(False)
            assert client.connect_ex(("127.0.0.1", exporter.port)) in (0, 115)  # 115: EINPROGRESS
            clients.append(client)
        for client in clients:
            client.settimeout(WAIT_S)
            try:
                client.sendall(HEAD[:30])  # a request line and half a header, never finished
            except OSError:
                pass  # already closed by the exporter: a later round of its timeout
        # A scrape among them is answered with data once the held ones time out; meanwhile
        # the exporter holds at most --max-connections of them, and no thread for any.
        answer: list = []
        scraper = threading.Thread(target=lambda: answer.append(http_get(exporter.port)), daemon=True)
        scraper.start()
        most = (0, 0)
        while scraper.is_alive():
            fds, threads = exporter.resources()
            most = (max(most[0], fds), max(most[1], threads))
            assert fds <= idle_fds + DEFAULT_MAX_CONNECTIONS + OWN_DESCRIPTORS, (fds, idle_fds)
            assert threads <= idle_threads + DEFAULT_MAX_REQUESTS, threads
            scraper.join(timeout=0.05)
        status, page = answer[0]
        assert status == 200, (status, page[:500])
        has_data(page)
        # The first client was dropped with 408 after its 2 s (bounded wait: WAIT_S).
        first = clients[0]
        assert read_all(first).startswith(b"HTTP/1.0 408 Request Timeout\r\n")
        assert most[0] > idle_fds + 100, most  # it did hold many at once: the bound above was tested
    finally:
        for client in clients:
            client.close()
    exporter.back_to((idle_fds, idle_threads))
    has_data(exporter.scrape())


def test_a_head_trickled_a_byte_at_a_time_still_times_out(xs, exporters):
    exporter = exporters(xs.popen, "--client-timeout", "1")
    idle = exporter.idle()
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=WAIT_S) as client:
        trickle = HEAD[:-2]  # never the blank line that ends the head
        sent = 0
        answer = b""
        for byte in trickle:  # one byte every 0.2 s: 12 s for the lot, against a 1 s deadline
            try:
                client.send(bytes([byte]))
            except OSError:
                break
            sent += 1
            client.settimeout(0.2)
            try:
                answer = client.recv(1000)
            except TimeoutError:
                continue
            break
        assert answer.startswith(b"HTTP/1.0 408 Request Timeout\r\n"), (answer, sent)
        assert sent < len(trickle), sent  # dropped while still sending: a deadline, not a per-byte timeout
    exporter.back_to(idle)
    has_data(exporter.scrape())


def test_a_client_that_never_reads_its_answer_is_dropped(big_sim, exporters):
    exporter = exporters(big_sim, "--max-requests", "1", "--client-timeout", "1")
    has_data(exporter.scrape())
    idle = exporter.idle()
    with socket.socket() as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # set before connecting: a small window
        stuck.connect(("127.0.0.1", exporter.port))
        stuck.sendall(HEAD)
        # The only worker is stuck writing to it until the 1 s deadline, then serves the next.
        has_data(exporter.scrape())
        exporter.back_to(idle)
        stuck.settimeout(WAIT_S)
        got = b""
        try:
            while chunk := stuck.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        assert got.startswith(b"HTTP/1.0 200 ") and len(got) < 1_000_000, len(got)  # cut short


def test_two_hundred_concurrent_scrapes_each_get_data(xs, exporters):
    exporter = exporters(xs.popen)
    has_data(exporter.scrape())
    idle = exporter.idle()
    clients = [socket.create_connection(("127.0.0.1", exporter.port), timeout=WAIT_S) for _ in range(200)]
    try:
        for client in clients:  # every request is in before any answer is read
            client.sendall(HEAD)
        answers = [parse_answer(read_all(client)) for client in clients]
    finally:
        for client in clients:
            client.close()
    unavailable = sum('scrape_error{error="unavailable"} 1.0' in page for _status, page in answers)
    assert unavailable == 0, f"{unavailable} of 200 scrapes found Xenstore unavailable"
    for status, page in answers:
        assert status == 200
        has_data(page)
    exporter.back_to(idle)


def test_a_hung_xenstored_holds_no_more_than_max_requests_threads(private_xs, exporters):
    # xenstored stopped (SIGSTOP) mid-burst: every worker waits on the one walk, the other
    # requests wait for a worker without a thread of their own; resumed, every scrape has data.
    exporter = exporters(
        lambda *args, **kwargs: private_xs.popen(*args, env={"XBCTL_XENSTORE_TIMEOUT": "120"}, **kwargs)
    )
    has_data(exporter.scrape())
    idle_fds, idle_threads = exporter.idle()
    os.kill(private_xs.daemon.pid, signal.SIGSTOP)
    clients = []
    try:
        for _ in range(200):
            clients.append(socket.create_connection(("127.0.0.1", exporter.port), timeout=WAIT_S))
            clients[-1].sendall(HEAD)
        deadline = time.monotonic() + WAIT_S
        while (now := exporter.resources())[0] < idle_fds + 200 or now[1] < idle_threads + DEFAULT_MAX_REQUESTS:
            assert time.monotonic() < deadline, ("the burst never arrived", now, (idle_fds, idle_threads))
            time.sleep(0.02)
        for _ in range(20):  # every request is in and read: the threads stay at the cap
            assert exporter.resources()[1] == idle_threads + DEFAULT_MAX_REQUESTS, exporter.resources()
            time.sleep(0.02)
        os.kill(private_xs.daemon.pid, signal.SIGCONT)
        for client in clients:
            status, page = parse_answer(read_all(client))
            assert status == 200
            has_data(page)
    finally:
        os.kill(private_xs.daemon.pid, signal.SIGCONT)
        for client in clients:
            client.close()
    exporter.back_to((idle_fds, idle_threads))


def test_scrapes_while_xenstored_restarts(private_xs, exporters):
    exporter = exporters(private_xs.popen)
    has_data(exporter.scrape())
    idle = exporter.idle()
    outcomes: list[str] = []
    stop = threading.Event()

    def scrape_on() -> None:
        while not stop.is_set() and len(outcomes) < 2000:  # bounded either way
            status, page = http_get(exporter.port)
            assert status == 200, (status, page[:300])
            if 'scrape_error{error=""} 0.0' in page:
                outcomes.append("data")
            elif 'scrape_error{error="unavailable"} 1.0' in page:
                outcomes.append("unavailable")
            else:
                outcomes.append(page)

    scrapers = [threading.Thread(target=scrape_on, daemon=True) for _ in range(4)]
    for scraper in scrapers:
        scraper.start()
    try:
        for _ in range(3):
            private_xs.daemon.kill()
            seen = len(outcomes)
            private_xs.wait_for(
                lambda seen=seen: "unavailable" in outcomes[seen:], "a scrape without xenstored", WAIT_S
            )
            private_xs.daemon.start()
            with __import__("pyxs").Client(unix_socket_path=str(private_xs.socket_path)) as client:
                lay_out_host(client)  # a restarted xenstored is empty until the toolstack fills it
            seen = len(outcomes)
            private_xs.wait_for(lambda seen=seen: "data" in outcomes[seen:], "a scrape after the restart", WAIT_S)
    finally:
        stop.set()
        for scraper in scrapers:
            scraper.join(timeout=WAIT_S)
    assert set(outcomes) <= {"data", "unavailable"}, [o for o in outcomes if o not in ("data", "unavailable")][:1]
    has_data(exporter.scrape())
    exporter.back_to(idle)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-requests", "0"], "--max-requests: 0 is out of range"),
        (["--max-requests", "1.5"], "--max-requests: 1.5 is not a whole number"),
        (["--max-requests", "many"], "--max-requests: invalid number 'many'"),
        (["--max-connections", "-3"], "--max-connections: invalid number '-3'"),
        (["--max-connections", "100000"], "--max-connections: 100000 is out of range"),
        (["--client-timeout", "0"], "--client-timeout: 0 is out of range"),
        (["--client-timeout", "nan"], "--client-timeout: invalid number 'nan'"),
    ],
)
def test_bad_limits_fail_clearly(xbctl, args, message):
    before = xbctl.snapshot()
    assert_clean_failure(xbctl.process("exporter", "--listen", "127.0.0.1:9", *args, timeout=30), 2, message)
    assert xbctl.snapshot() == before


def test_more_connections_than_descriptors_fail_clearly(xbctl):
    # Under a hard limit of 1024 descriptors, 1000 connections leave no room for the exporter's own.
    env = xbctl.process_env()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    done = subprocess.run(
        ["xbctl", "exporter", "--listen", "127.0.0.1:9", "--max-connections", "1000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit,
    )
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr == (
        "xbctl: --max-connections 1000: needs 1064 descriptors, the limit is 1024\n"
        "xbctl: hint: at most --max-connections 960, or raise LimitNOFILE\n"
    ), done.stderr


def test_a_low_soft_limit_is_raised_for_the_connections(xbctl, exporters):
    # ulimit -n 100 (soft), the hard limit higher: the exporter raises its own soft limit.
    env = xbctl.process_env()

    def popen(*args: str, preexec_fn=None) -> subprocess.Popen:
        def low() -> None:
            preexec_fn()
            resource.setrlimit(resource.RLIMIT_NOFILE, (100, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        return spawn_xbctl(env, *args, preexec_fn=low)

    exporter = exporters(popen)
    limits = open(f"/proc/{exporter.pid}/limits").read()
    soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.M).group(1))
    assert soft == DEFAULT_MAX_CONNECTIONS + 64, limits
    has_data(exporter.scrape(), domains=("Domain-0", "web", "db", "mail"))


def test_paths_other_than_metrics(xbctl, exporters):
    env = xbctl.process_env()
    exporter = exporters(lambda *args, **kw: spawn_xbctl(env, *args, **kw))
    status, page = http_get(exporter.port, "/metrics?name[]=xen_balloon_target_bytes")
    assert status == 200
    has_data(page)
    status, page = http_get(exporter.port, "/")
    assert status == 200 and 'href="/metrics"' in page, page
    assert http_get(exporter.port, "/nonexistent")[0] == 404
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=WAIT_S) as client:
        client.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert parse_answer(read_all(client))[0] == 501
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=WAIT_S) as client:
        # A head past 16 KiB: 431, then closed with the rest unread, which the kernel may turn
        # into a reset that overtakes the answer.
        try:
            client.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Padding: " + b"x" * 20000 + b"\r\n\r\n")
            answer = read_all(client)
        except ConnectionResetError:
            answer = b"HTTP/1.0 431 (overtaken by the reset)"
        assert answer.startswith(b"HTTP/1.0 431 "), answer
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=WAIT_S) as client:
        client.sendall(b"\x16\x03\x01garbage\r\n\r\n")  # a TLS hello, say
        assert parse_answer(read_all(client))[0] == 400
    has_data(exporter.scrape(), domains=("Domain-0", "web", "db", "mail"))
    exporter.stop()
    assert [line for line in exporter.stderr] == [
        f"xbctl: serving metrics at http://127.0.0.1:{exporter.port}/metrics\n"
    ]
