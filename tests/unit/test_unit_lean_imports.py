"""What start-up does without the standard library's slow modules, held to what they would do:
the simulator's state read without json (xbctl/transports/simstore.py) reads every input as
json.loads reads it, and ExitStatus without enum behaves as the IntEnum it was."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from xbctl.errors import ExitStatus
from xbctl.transports.simstore import _HEADER, loads_json

NAMES = ("OK", "REFUSED", "USAGE", "UNAVAILABLE", "UNKNOWN", "NOT_REACHED", "WRITTEN_OUTPUT_FAILED")

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def outcome(read, raw: bytes):
    """What READ makes of RAW: ("value", its value's repr: NaN is not NaN) or ("error", its type and message)."""
    try:
        return "value", repr(read(raw))
    except (ValueError, RecursionError) as exc:
        return "error", type(exc), str(exc)


def written(document: dict, ensure_ascii: bool = True) -> bytes:
    """DOCUMENT as the simulator's save() lays it out: the marker first, one space of indent."""
    return json.dumps({"format": "xbctl-sim-state", **document}, indent=1, ensure_ascii=ensure_ascii).encode() + b"\n"


def test_a_file_of_ours_starts_with_the_header_the_reader_looks_for():
    assert written({"schema": 1}).startswith(_HEADER)


@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6), st.booleans())
def test_a_state_file_reads_as_json_loads_reads_it(document, ensure_ascii):
    raw = written(document, ensure_ascii)
    assert outcome(loads_json, raw) == outcome(json.loads, raw)


@given(st.binary(max_size=60), st.sampled_from([b"", _HEADER]))
@example(raw=b' "schema": 1}\n \t\r\n', prefix=_HEADER)  # whole, with json's whitespace after it
@example(raw=b' "schema": 1} x', prefix=_HEADER)  # trailing data
@example(raw=b' "schema": 1}\x0c', prefix=_HEADER)  # whitespace that is not json's
@example(raw=b' "schema": 1, "n": NaN, "i": -Infinity}', prefix=_HEADER)  # json's constants
@example(raw=b' "schema": 1, "s": "\xc3\xa9"}', prefix=_HEADER)  # UTF-8, not ASCII
@example(raw=b' "schema": 1, "s": "a\tb"}', prefix=_HEADER)  # a control character in a string
@example(raw=b' "schema": 1, "s": "\\ud800"}', prefix=_HEADER)  # a lone surrogate
@example(raw=b' "sch', prefix=_HEADER)  # torn
@example(raw=b"\xef\xbb\xbf{}", prefix=b"")  # a BOM, which json.loads reads from bytes
def test_any_bytes_read_as_json_loads_reads_them(raw, prefix):
    data = prefix + raw
    assert outcome(loads_json, data) == outcome(json.loads, data)


def test_deep_nesting_fails_as_json_loads_fails():
    data = _HEADER + b' "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert outcome(loads_json, data)[:2] == outcome(json.loads, data)[:2] == ("error", RecursionError)


def test_exit_statuses_are_ints_with_names_in_order():
    assert [int(status) for status in ExitStatus] == list(range(len(NAMES)))
    assert [status.name for status in ExitStatus] == list(NAMES)
    assert len(ExitStatus) == len(NAMES)
    for value, name in enumerate(NAMES):
        status = getattr(ExitStatus, name)
        assert ExitStatus(value) is status
        assert isinstance(status, int) and isinstance(status, ExitStatus)
        assert status == value and hash(status) == hash(value) and status.value == value
        assert (str(status), f"{status}", "%d" % status, json.dumps(status)) == (str(value),) * 4
        assert repr(status) == f"<ExitStatus.{name}: {value}>"
    assert ExitStatus.USAGE > ExitStatus.REFUSED


def test_an_unknown_exit_status_is_refused_as_an_enum_refuses_it():
    with pytest.raises(ValueError, match="^7 is not a valid ExitStatus$"):
        ExitStatus(7)
    with pytest.raises(ValueError):
        ExitStatus("2")  # type: ignore[arg-type]


def test_an_exit_status_is_the_process_exit_status():
    with pytest.raises(SystemExit) as ended:
        raise SystemExit(ExitStatus.UNKNOWN)
    assert ended.value.code == 4


def test_an_exit_status_survives_a_pickle_as_itself():
    assert pickle.loads(pickle.dumps(ExitStatus.UNAVAILABLE)) is ExitStatus.UNAVAILABLE
