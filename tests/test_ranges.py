"""The one number grammar behind every option that takes seeds, layers, split points or floats."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from histobridge.errors import HistobridgeError, InputError
from histobridge.ranges import SEED_MAX, check_int, parse_floats, parse_ints, parse_seeds


def test_grammar() -> None:
    assert parse_ints("0-3,7, 10-11", what="--seeds") == (0, 1, 2, 3, 7, 10, 11)
    assert parse_ints("5", what="--seeds") == (5,)
    assert parse_ints("0-10:5, 20 - 27 : 3", what="--seeds") == (0, 5, 10, 20, 23, 26)
    assert parse_ints("-3--1,2", what="--x") == (-3, -2, -1, 2)
    assert parse_ints("4-4", what="--x") == (4,)
    assert parse_ints("1,,2,", what="--x") == (1, 2)  # empty items are skipped


def test_duplicates_are_dropped_keeping_the_written_order() -> None:
    assert parse_ints("2,0-3,2,1", what="--seeds") == (2, 0, 1, 3)
    assert parse_floats("0.5,0.5,1", what="--alpha") == (0.5, 0.5, 1.0)  # floats keep them


def test_reversed_range_is_an_error_naming_the_option() -> None:
    with pytest.raises(InputError, match=r"^--layers '3-1': range '3-1' runs backwards; write 1-3$"):
        parse_ints("3-1", what="--layers")
    with pytest.raises(InputError, match="--seeds"):
        parse_seeds("3-1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,x", r"^--splits '0,x': 'x' is not a whole number or a range"),
        ("1.5", r"'1.5' is not a whole number"),
        ("1-2-3", r"'1-2-3' is not a whole number"),
        ("0-4:0", r"step 0 in '0-4:0' must be positive"),
        ("0-4:-1", r"step -1 in '0-4:-1' must be positive"),
        ("", r"^--splits '': no values"),
        (" , ", r"no values"),
        ("9" * 40, r"is not a whole number"),
    ],
)
def test_garbage_names_the_option(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_ints(text, what="--splits")


def test_bounds_and_empty() -> None:
    assert parse_ints("", what="--layers", allow_empty=True) == ()
    with pytest.raises(InputError, match=r"--layers '0-9': 9 is outside the allowed range 0..5"):
        parse_ints("0-9", what="--layers", lo=0, hi=5)
    with pytest.raises(InputError, match=r"-1 is outside the allowed range 0..4294967295"):
        parse_seeds("-1")
    assert parse_seeds(f"{SEED_MAX}") == (SEED_MAX,)
    with pytest.raises(InputError, match="outside"):
        parse_seeds(f"{SEED_MAX - 1}-{SEED_MAX + 1}")


def test_huge_ranges_are_refused_before_expansion() -> None:
    """``--seeds 0-10000000`` once took quadratic time; now the cap refuses it without expanding."""
    with pytest.raises(InputError, match=r"--seeds '0-10000000': more than 100,000 values"):
        parse_seeds("0-10000000")
    with pytest.raises(InputError, match="more than 100,000"):
        parse_ints("0-1000000000000000", what="--seeds")
    with pytest.raises(InputError, match="more than 100,000"):  # the cap counts values as written
        parse_ints("0-60000,0-60000", what="--seeds")
    assert len(parse_seeds("0-99999")) == 100_000
    assert parse_ints("0-10:5", what="--x", max_count=3) == (0, 5, 10)
    with pytest.raises(InputError, match="more than 2 values"):
        parse_ints("0-10:5", what="--x", max_count=2)


def test_floats() -> None:
    assert parse_floats("0.25, 0.5,1", what="--alpha", lo=0, hi=1) == (0.25, 0.5, 1.0)
    assert parse_floats("-0.5,0,0.5", what="--thresholds", count=3) == (-0.5, 0.0, 0.5)
    with pytest.raises(InputError, match=r"^--alpha '0.5,x': 'x' is not a number$"):
        parse_floats("0.5,x", what="--alpha")
    with pytest.raises(InputError, match="not a finite number"):
        parse_floats("nan", what="--alpha")
    with pytest.raises(InputError, match=r"--alpha '2': 2 is outside the allowed range 0..1"):
        parse_floats("2", what="--alpha", lo=0.0, hi=1.0)
    with pytest.raises(InputError, match="expected 3 comma-separated numbers, got 2"):
        parse_floats("0.1,0.2", what="--thresholds", count=3)
    with pytest.raises(InputError, match="no values"):
        parse_floats("", what="--alpha")


def test_check_int_for_count_options() -> None:
    """What the demo uses to refuse ``--seeds -1`` before any work starts."""
    assert check_int(256, what="--seeds", lo=1) == 256
    assert check_int(np.int64(3), what="--steps", lo=2) == 3
    with pytest.raises(InputError, match=r"^--seeds '-1': -1 is outside the allowed range >= 1$"):
        check_int(-1, what="--seeds", lo=1)
    with pytest.raises(InputError, match="whole number"):
        check_int(2.5, what="--seeds")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="whole number"):
        check_int(True, what="--seeds")
    assert issubclass(InputError, HistobridgeError)


def test_module_is_light() -> None:
    code = "import sys, histobridge.ranges; print(any(m in sys.modules for m in ('torch', 'numpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
