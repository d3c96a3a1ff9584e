"""The command line.

    table.py     the command table: each command, the global options it takes, its arguments
    parse.py     the lean parser (no Typer): argv -> Invocation
    main.py      run() and main(): the one place outcomes become exit statuses
    node_commands.py  the sysctl form and the node commands; host.py mem-set/mem-max;
    listing.py   list; sim.py sim advance/reset/log; agent.py agent; fleet.py; policy.py policy
    typer_app.py the Typer app, loaded only for help, completion and usage-error messages

Importing this package costs nothing: `app` (Typer) loads on first use.
"""

from __future__ import annotations


def main() -> None:
    """Console entry point."""
    from .main import main as run_main

    run_main()


def __getattr__(name: str):
    if name == "app":
        from . import typer_app
        from .main import run

        typer_app.ENTRY = run  # Typer's runner (the tests) runs the same run() as the command
        return typer_app.app
    raise AttributeError(name)
