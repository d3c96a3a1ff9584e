"""Ctrl-C at a chosen moment of an xbctl run, for tests/test_hardening_files.py.

On PYTHONPATH, Python imports this module at start-up. With XBCTL_TEST_INTERRUPT=N it sends
SIGINT to its own process at the N-th profiler event (a Python or C function called or
returning) counted from the moment xbctl/__main__.py has put its Ctrl-C handler in place:
before that, an interrupt is Python's own business (site, the console script's first lines).
With XBCTL_TEST_INTERRUPT=count it interrupts nothing and, as the run ends (os._exit),
writes to $XBCTL_TEST_INTERRUPT_REPORT the number of events and the landmarks among them:
where each xbctl module starts, where a signal's handler changes, the first output, the
first weak-reference callback of importlib's after each change of handler, the end.
Events are counted in the main thread, where Python runs signal handlers.
"""

import _signal
import os
import signal
import sys

_WANTED = os.environ.get("XBCTL_TEST_INTERRUPT")


def _install() -> None:
    counting = _WANTED == "count"
    target = 0 if counting else int(_WANTED)
    package = os.sep + "xbctl" + os.sep
    main_file = package + "__main__.py"
    state = {"armed": False, "count": 0}
    landmarks: list[tuple[int, str]] = []

    def report() -> None:
        with open(os.environ["XBCTL_TEST_INTERRUPT_REPORT"], "w") as out:
            out.write(f"total {state['count']}\n")
            out.writelines(f"{index} {what}\n" for index, what in landmarks)

    def last_change(found: list[tuple[int, str]]) -> tuple[int, str]:
        changes = [landmark for landmark in found if landmark[1].endswith("signal.signal")]
        return changes[-1] if changes else found[0] if found else (0, "")

    def hook(frame, event, arg) -> None:
        if not state["armed"]:
            # Armed once xbctl's own early handler is in place (main()'s first call returns).
            if event == "c_return" and arg is _signal.signal and frame.f_code.co_filename.endswith(main_file):
                state["armed"] = True
            return
        state["count"] += 1
        index = state["count"]
        if not counting:
            if index == target:
                sys.setprofile(None)
                os.kill(os.getpid(), signal.SIGINT)
            return
        code = frame.f_code
        if event == "call" and code.co_name == "<module>" and package in code.co_filename:
            landmarks.append((index, "import " + code.co_filename.rpartition(package)[2]))
        elif event in ("c_call", "c_return") and arg is _signal.signal:
            landmarks.append((index, f"{event} signal.signal"))
        elif event == "c_call" and getattr(arg, "__name__", "") == "write" and not landmarks[-1][1].startswith("write"):
            landmarks.append((index, "write"))
        elif event == "call" and code.co_name == "cb" and code.co_filename == "<frozen importlib._bootstrap>":
            # importlib's weak-reference callback of a module lock: an exception there can only
            # be reported ("Exception ignored"); the first one after each change of handler.
            if not any(what == "callback" for _index, what in landmarks[landmarks.index(last_change(landmarks)) + 1 :]):
                landmarks.append((index, "callback"))
        elif event == "c_call" and arg is os._exit:
            landmarks.append((index, "os._exit"))
            report()

    sys.setprofile(hook)


if _WANTED:
    _install()
