"""`xbctl exporter` and `xbctl top`: a host's balloons for monitoring and for watching."""

from __future__ import annotations

from ..errors import usage_error


def run_exporter(invocation, options, output) -> None:
    """Serve every domain's balloon as Prometheus metrics until interrupted."""
    from ..exporter import serve

    listen = invocation.local.get("--listen")
    if listen is None:
        raise usage_error("exporter needs --listen HOST:PORT", hint="see 'xbctl exporter --help'")
    limits = exporter_limits(invocation.local)
    options.api()  # a bad --transport or sim state fails at start, not at each scrape

    def ready(host: str, port: int) -> None:
        output.say(f"serving metrics at http://{host}:{port}/metrics")

    try:
        serve(
            listen, options.transport_name, options.sim_state, ready, log=lambda m: output.warnings([m]), limits=limits
        )
    except KeyboardInterrupt:
        return  # Ctrl-C or SIGINT is how an exporter stops: not an error


MAX_REQUESTS = 1024  # worker threads
MAX_CONNECTIONS = 65536
MAX_CLIENT_TIMEOUT_S = 3600.0


def exporter_limits(local: dict):
    """--max-requests, --max-connections and --client-timeout as the server's limits (exit 2 if malformed)."""
    from ..exporter_http import DEFAULT_CLIENT_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_REQUESTS, Limits
    from ..units import parse_number

    def count(name: str, default: int, maximum: int) -> int:
        text = local.get(name)
        if text is None:
            return default
        value = parse_number(text, what=name, maximum=maximum, positive=True)
        if not value.is_integer():
            raise usage_error(f"{name}: {text} is not a whole number")
        return int(value)

    timeout_text = local.get("--client-timeout")
    return Limits(
        max_requests=count("--max-requests", DEFAULT_MAX_REQUESTS, MAX_REQUESTS),
        max_connections=count("--max-connections", DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS),
        client_timeout_s=DEFAULT_CLIENT_TIMEOUT_S
        if timeout_text is None
        else parse_number(timeout_text, what="--client-timeout", maximum=MAX_CLIENT_TIMEOUT_S, positive=True),
    )


MAX_FRAMES = 10**9
MAX_DELAY_S = 86400.0  # a day between frames: anything longer is a typo


def run_top(invocation, options, output) -> None:
    """Show the domain table, redrawn as balloons move (q or Ctrl-C quits); -b: frames for scripts."""
    from ..top import DEFAULT_DELAY_S, View
    from ..top import run_top as follow

    local = invocation.local
    batch = bool(local.get("--batch"))
    if "--delay" in local and not batch:
        raise usage_error(
            "--delay goes with --batch (-b)",
            hint="on a terminal and in a pipe, top redraws whenever a balloon moves",
        )
    frames = top_frames(local.get("--iterations"))
    delay_s = DEFAULT_DELAY_S
    if "--delay" in local:
        from ..units import parse_number

        delay_s = parse_number(local["--delay"], what="--delay", maximum=MAX_DELAY_S, positive=True)
    name_glob = local.get("--filter")
    if name_glob == "":
        raise usage_error("--filter: empty pattern", hint="a shell pattern for domain names, e.g. 'web*'")
    view = View(local.get("--sort", "id"), bool(local.get("--reverse")), name_glob, human=output.human)
    api = options.api()
    output.simulated_note()  # said before the first frame, as list says it (stdout stays the frames)
    follow(api, view, batch=batch, frames=frames, delay_s=delay_s)


def top_frames(text: str | None) -> int | None:
    """--iterations COUNT as a whole number of frames (None: until interrupted); exit 2 if malformed."""
    if text is None:
        return None
    from ..units import parse_number

    value = parse_number(text, what="--iterations", maximum=MAX_FRAMES, positive=True)
    if not value.is_integer():
        raise usage_error(f"--iterations: {text} is not a whole number")
    return int(value)
