"""One grammar for every option that takes numbers (seeds, layers, split points, α values…).

Integers: comma-separated items, each ``a`` (one value), ``a-b`` (inclusive range) or ``a-b:s``
(every ``s``-th value from ``a`` to at most ``b``), e.g. ``0-3,7,10-20:5`` → 0 1 2 3 7 10 15 20.
Spaces around items are ignored; a negative number is written with a leading minus (``-2--1``).

* A range that runs backwards (``3-1``) is an error, never an empty selection.
* Duplicates are dropped, keeping the first occurrence and the written order (``2,0-3`` → 2 0 1 3):
  a seed or a layer given twice never means twice the work.
* Parsing is linear in the number of values, and ``max_count`` caps that number *as written* (before
  duplicates are dropped); the cap is checked before any range is expanded, so ``0-10**12`` is
  refused at once instead of filling memory.

Floats: comma-separated finite numbers (no ranges, since ``-`` is a sign there); order and
duplicates are kept, because lists such as thresholds may legitimately repeat a value.

Every error is an :class:`~histobridge.errors.InputError` whose message starts with the option's
name (``what``), so the command line shows which option was wrong. This module imports nothing
heavy and sits below every other layer; the CLI, the library and the demo all validate with it.
"""

from __future__ import annotations

import math
import operator
import re
from itertools import chain, pairwise
from typing import SupportsIndex

from histobridge.errors import InputError

GRAMMAR = "a,b,c-d or c-d:step"
DEFAULT_MAX_COUNT = 100_000
MAX_SEEDS = 100_000
SEED_MAX = 2**32 - 1  # numpy RandomState accepts seeds in [0, 2**32)

_ITEM = re.compile(r"(?P<a>[+-]?\d+)(?:\s*-\s*(?P<b>[+-]?\d+)(?:\s*:\s*(?P<step>[+-]?\d+))?)?")
_MAX_DIGITS = 30  # far beyond any seed or index; keeps int() away from pathological inputs


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _bounds(lo: int | float | None, hi: int | float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g}..{hi:g}" if isinstance(lo, float) or isinstance(hi, float) else f"{lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    return f"<= {hi}"


def _check_bounds(
    values: tuple[int | float, ...], what: str, text: str, lo: int | float | None, hi: int | float | None
) -> None:
    for v in values:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            shown = f"{v:g}" if isinstance(v, float) else str(v)
            raise InputError(f"{what} {_show(text)}: {shown} is outside the allowed range {_bounds(lo, hi)}")


def _item(part: str, what: str, text: str) -> tuple[int, int, int]:
    """(first, last, step) of one item; ``last`` is the last value actually produced."""
    m = _ITEM.fullmatch(part)
    if m is None or any(len(g or "") > _MAX_DIGITS for g in m.groups()):
        raise InputError(
            f"{what} {_show(text)}: {part!r} is not a whole number or a range (grammar: {GRAMMAR})"
        )
    a = int(m["a"])
    if m["b"] is None:
        return a, a, 1
    b = int(m["b"])
    step = 1 if m["step"] is None else int(m["step"])
    if step <= 0:
        raise InputError(f"{what} {_show(text)}: step {step} in {part!r} must be positive")
    if b < a:
        raise InputError(f"{what} {_show(text)}: range {part!r} runs backwards; write {b}-{a}")
    return a, a + (b - a) // step * step, step


def parse_ints(
    text: str,
    *,
    what: str,
    lo: int | None = None,
    hi: int | None = None,
    max_count: int = DEFAULT_MAX_COUNT,
    allow_empty: bool = False,
) -> tuple[int, ...]:
    """Integers from ``"a,b,c-d,e-f:step"``, checked against ``lo..hi`` (inclusive) and ``max_count``.

    Returns the values in written order without duplicates. ``what`` names the option in errors.
    """
    items: list[tuple[int, int, int]] = []
    total = 0
    for raw in str(text).split(","):
        part = raw.strip()
        if not part:
            continue
        first, last, step = _item(part, what, text)
        _check_bounds((first, last), what, text, lo, hi)
        total += (last - first) // step + 1
        if total > max_count:
            raise InputError(
                f"{what} {_show(text)}: more than {max_count:,} values; at most {max_count:,} are allowed"
            )
        items.append((first, last, step))
    if not items and not allow_empty:
        raise InputError(f"{what} {_show(text)}: no values (grammar: {GRAMMAR})")
    spans = [range(first, last + 1, step) for first, last, step in items]
    if all(b[0] > a[-1] for a, b in pairwise(spans)):  # increasing, disjoint: no duplicates
        return tuple(chain.from_iterable(spans))
    return tuple(dict.fromkeys(chain.from_iterable(spans)))


def parse_floats(
    text: str,
    *,
    what: str,
    lo: float | None = None,
    hi: float | None = None,
    count: int | None = None,
    max_count: int = 1_000,
    allow_empty: bool = False,
) -> tuple[float, ...]:
    """Finite floats from ``"0.25,0.5,1"`` (order and duplicates kept), optionally exactly ``count``."""
    values: list[float] = []
    for raw in str(text).split(","):
        part = raw.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise InputError(f"{what} {_show(text)}: {part!r} is not a number") from None
        if not math.isfinite(v):
            raise InputError(f"{what} {_show(text)}: {part!r} is not a finite number")
        values.append(v)
        if len(values) > max_count:
            raise InputError(f"{what} {_show(text)}: more than {max_count:,} values")
    if count is not None and len(values) != count:
        raise InputError(f"{what} {_show(text)}: expected {count} comma-separated numbers, got {len(values)}")
    if not values and not allow_empty:
        raise InputError(f"{what} {_show(text)}: no values")
    out = tuple(values)
    _check_bounds(out, what, text, lo, hi)
    return out


def parse_seeds(text: str, *, what: str = "--seeds", max_count: int = MAX_SEEDS) -> tuple[int, ...]:
    """Seeds for ``RandomState``: :func:`parse_ints` limited to ``0..2**32−1`` and ``max_count``."""
    return parse_ints(text, what=what, lo=0, hi=SEED_MAX, max_count=max_count)


def check_int(value: SupportsIndex, *, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """One integer option (a count such as the demo's ``--seeds 256``) checked against ``lo..hi``."""
    try:
        number = operator.index(value)
    except TypeError:
        raise InputError(f"{what} {value!r}: expected a whole number") from None
    if isinstance(value, bool):
        raise InputError(f"{what} {value!r}: expected a whole number")
    _check_bounds((number,), what, str(number), lo, hi)
    return number


__all__ = [
    "DEFAULT_MAX_COUNT",
    "GRAMMAR",
    "MAX_SEEDS",
    "SEED_MAX",
    "check_int",
    "parse_floats",
    "parse_ints",
    "parse_seeds",
]
