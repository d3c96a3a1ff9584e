"""Prometheus metrics of every domain's balloon: for `xbctl exporter` and `list --format prometheus`.

One list walk per scrape (a custom collector), values in bytes, labelled with the domain's
name only: a domain id changes at every guest reboot, and a label that changes mints new
series, so ids are on one info series (xen_balloon_domain_info) that maps names to ids.
A domain that cannot be read, or a transport that cannot be reached, shows as an error
metric (xen_balloon_up 0 for the transport): a scrape never fails because of what it scrapes. Error labels are words from a
fixed set (xbctl.errors.ERROR_KINDS), never messages: a guest's garbage must not mint
label values; the message goes to the exporter's log instead.
"""

from __future__ import annotations

from typing import Iterator

from .errors import ExitStatus, XbctlError, error_kind, usage_error

KIB = 1024
GAUGES = (
    ("current", "xen_balloon_current_bytes", "Memory the domain holds now (machdep.xen.balloon.current)."),
    ("target", "xen_balloon_target_bytes", "Memory the domain is steered to, video memory included (as xl mem-set)."),
    ("min", "xen_balloon_min_bytes", "Floor of the target (machdep.xen.balloon.min)."),
    ("max", "xen_balloon_max_bytes", "Most the driver can reach: xen-max clipped to its boot size."),
    ("xen-max", "xen_balloon_xen_max_bytes", "The hypervisor's limit for the domain (memory/static-max)."),
)
DRIVER_STATES = ("steady", "moving", "stuck", "no_driver", "unknown")


def driver_state(entry) -> str:
    """The balloon driver's state of a readable list entry: steady, moving, stuck, no_driver (the
    domain says it has none), or unknown (nothing says: every Linux guest), as the list's column."""
    if entry.has_driver is False:
        return "no_driver"
    if entry.diagnostic:
        return "stuck"
    if entry.has_driver is None:
        return "unknown"
    nodes = entry.nodes
    return "steady" if nodes["current"].value_kib == nodes["target"].value_kib else "moving"


class BalloonCollector:
    """A prometheus_client collector that walks the domains once per collect()."""

    def __init__(self, transport: str | None, sim_state: str | None, log=None) -> None:
        self.transport = transport
        self.sim_state = sim_state
        self.log = log  # LOG(message): where a scrape says what it could not read
        # The transport that answered last: build_info keeps its label while Xenstore is away.
        self._answered = transport

    def describe(self) -> list:
        """Nothing up front: registering must not walk Xenstore."""
        return []

    def collect(self) -> Iterator:
        """The metrics of one walk."""
        import platform

        from prometheus_client.core import GaugeMetricFamily, StateSetMetricFamily

        from . import __version__
        from .api import Xbctl

        labels = ["domain"]
        gauges = {key: GaugeMetricFamily(name, doc, labels=labels) for key, name, doc in GAUGES}
        info = GaugeMetricFamily(
            "xen_balloon_domain_info",
            "1 for each domain; domid is its id now (a new one at each guest reboot).",
            labels=["domain", "domid"],
        )
        state = StateSetMetricFamily(
            "xen_balloon_driver_state",
            "The balloon driver's state (steady, moving, stuck, no_driver, unknown).",
            labels=labels,
        )
        read_error = GaugeMetricFamily(
            "xen_balloon_domain_read_error",
            "1 when the domain's balloon nodes could not be read, else 0; error: missing, malformed, permission.",
            labels=[*labels, "error"],
        )
        up = GaugeMetricFamily(
            "xen_balloon_up", "1 when the domains could be listed (Xenstore or the simulator answered), else 0."
        )
        scrape_error = GaugeMetricFamily(
            "xen_balloon_scrape_error",
            "1 when the transport could not be read at all, else 0; error: unavailable, usage, ...",
            labels=["error"],
        )
        free = None
        failure = None
        try:
            with Xbctl(self.transport, self.sim_state) as xb:
                listing = xb.list()
                self._answered = xb.transport_name
        except XbctlError as exc:
            failure = error_kind(exc)
            self._log(f"scrape failed ({failure}): {exc.message}")
        else:
            # Should two domains hold one name (one being renamed away while its successor
            # starts), the series under that name are the newer one's (the higher id): two
            # samples with one label set would make Prometheus refuse the whole scrape.
            newest: dict[str, int] = {}
            for entry in listing.domains:
                newest[entry.domain.name] = max(entry.domain.id, newest.get(entry.domain.name, -1))
            for entry in listing.domains:
                name = entry.domain.name
                info.add_metric([name, str(entry.domain.id)], 1)
                if entry.domain.id != newest[name]:
                    self._log(f"domain {name} ({entry.domain.id}): a newer domain has that name; not exported")
                    continue
                if entry.nodes is None:
                    read_error.add_metric([name, entry.error_kind or "other"], 1)
                    self._log(f"domain {name} ({entry.domain.id}) unreadable: {entry.error}")
                    continue
                read_error.add_metric([name, ""], 0)
                for key, _name, _doc in GAUGES:
                    gauges[key].add_metric([name], entry.nodes[key].value_kib * KIB)
                current = driver_state(entry)
                state.add_metric([name], {state_name: state_name == current for state_name in DRIVER_STATES})
            if listing.host_free_kib is not None:
                free = GaugeMetricFamily(
                    "xen_balloon_host_free_bytes", "Memory the host has free for balloons to grow into."
                )
                free.add_metric([], listing.host_free_kib * KIB)
        up.add_metric([], 0 if failure else 1)
        scrape_error.add_metric([failure or ""], 1 if failure else 0)
        build = GaugeMetricFamily(
            "xen_balloon_build_info",
            "1; the labels say which xbctl, on which Python, reads which transport.",
            labels=["version", "python", "transport"],
        )
        build.add_metric([__version__, platform.python_version(), self._answered or "unknown"], 1)
        yield up
        yield build
        yield from gauges.values()
        yield state
        yield info
        yield read_error
        if free is not None:
            yield free
        yield scrape_error

    def _log(self, message: str) -> None:
        if self.log is not None:
            self.log(message)


def _require_prometheus_client() -> None:
    """A clear error, not a traceback, when the optional dependency is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise XbctlError(
            "the Prometheus metrics need the prometheus_client library",
            status=ExitStatus.UNAVAILABLE,
            hint="pip install 'xbctl[exporter]' (Debian: apt-get install python3-prometheus-client)",
        ) from None


def registry_for(transport: str | None, sim_state: str | None, log=None):
    """A registry holding only the balloon collector (no process or Python metrics)."""
    _require_prometheus_client()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(BalloonCollector(transport, sim_state, log))
    return registry


def exposition(transport: str | None, sim_state: str | None, log=None) -> str:
    """The metrics as Prometheus text, for node_exporter's textfile collector."""
    _require_prometheus_client()
    from prometheus_client import generate_latest

    return generate_latest(registry_for(transport, sim_state, log)).decode("utf-8")


def write_textfile(path: str, text: str) -> None:
    """TEXT as the file PATH, whole: written to a temporary file in PATH's directory, then
    renamed over PATH, so node_exporter's textfile collector never reads half a page."""
    import os
    import tempfile

    directory, name = os.path.split(os.path.abspath(path))
    temporary = None
    try:
        # Not *.prom: the collector reads only those, and must not read this one half-written.
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)  # node_exporter reads it as its own user
            handle.write(text)
        # No fsync: a page lost to a crash is replaced by the next run (the timer: 30 s later).
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise XbctlError(
            f"--output {path}: {exc.strerror or exc}",
            status=ExitStatus.REFUSED,
            hint="the directory must exist and be writable (Debian's: /var/lib/prometheus/node-exporter)",
        ) from None
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (or [V6]:PORT) as a host and port; a malformed one exits 2."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise usage_error(f"--listen {text!r}: not HOST:PORT", hint="for example --listen 127.0.0.1:9749")
    return host, int(port_text)


def serve(listen: str, transport: str | None, sim_state: str | None, ready=None, log=None, limits=None) -> None:
    """Serve /metrics on LISTEN until interrupted; READY(host, port) is called once listening.

    LOG(message) hears what a scrape could not read; LIMITS (exporter_http.Limits) bound what
    clients may hold. The HTTP server is xbctl's own (exporter_http), prometheus_client only
    writes the page, which works the same from Debian 12's 0.16 on."""
    import signal
    import threading

    from .exporter_http import Limits, Server, SharedWalk, ensure_descriptors

    host, port = parse_listen(listen)
    _require_prometheus_client()
    from prometheus_client import generate_latest

    limits = limits or Limits()
    ensure_descriptors(limits.max_connections)

    def quiet_log(message: str) -> None:
        # A log reader that went away (a journald restart) must not fail the scrape that logs.
        try:
            if log is not None:
                log(message)
        except (OSError, ValueError):
            pass

    registry = registry_for(transport, sim_state, quiet_log)
    try:
        server = Server(host, port, SharedWalk(lambda: generate_latest(registry)), limits, quiet_log)
    except OSError as exc:
        raise XbctlError(f"--listen {listen}: {exc.strerror or exc}", status=ExitStatus.UNAVAILABLE) from None
    # The command line restores SIGPIPE's default (xbctl -a | head ends quietly); a server must
    # not die of a client that hung up, nor of a log reader that went away.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN) if in_main else None
    try:
        if ready is not None:
            ready(host, server.port)
        server.serve_forever()
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGPIPE, previous)
