"""`xbctl exporter` and `xbctl top`: a host's balloons for monitoring and for watching."""

from __future__ import annotations

from ..errors import usage_error


def run_exporter(invocation, options, output) -> None:
    """Serve every domain's balloon as Prometheus metrics until interrupted."""
    from ..exporter import serve

    listen = invocation.local.get("--listen")
    if listen is None:
        raise usage_error("exporter needs --listen HOST:PORT", hint="see 'xbctl exporter --help'")
    options.api()  # a bad --transport or sim state fails at start, not at each scrape

    def ready(host: str, port: int) -> None:
        output.say(f"serving metrics at http://{host}:{port}/metrics")

    try:
        serve(listen, options.transport_name, options.sim_state, ready, log=lambda m: output.warnings([m]))
    except KeyboardInterrupt:
        return  # Ctrl-C or SIGINT is how an exporter stops: not an error


def run_top(invocation, options, output) -> None:
    """Show the domain table, redrawn as balloons move (q or Ctrl-C quits)."""
    from ..top import run_top as follow

    follow(options.api())
