"""The xbctl command (python -m xbctl, and the installed console script).

Ctrl-C before the command line is even parsed must not show a traceback, so the
first thing done is to make SIGINT end xbctl quietly, before the (slow) imports.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal  # typeshed has no stubs for _signal, whose functions these are
else:
    import _signal  # built in: no import to wait for before the handler is in place

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended


def _interrupted_early(signum: int, frame: object) -> None:
    # Nothing has been read or written yet: say so in one line and end at once.
    try:
        os.write(2, b"xbctl: interrupted\n")
    finally:
        os._exit(INTERRUPTED)


def main() -> None:
    """Run xbctl with Ctrl-C made quiet from the very start."""
    _signal.signal(_signal.SIGINT, _interrupted_early)
    from .cli.main import main as cli_main

    cli_main()


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[func-returns-value]  # None: status 0, as a console script ends
