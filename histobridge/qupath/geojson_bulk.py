"""Reading long GeoJSON collections in bulk: polygons built together, records made without a loop of checks.

A 10⁵-tile file spends its time per feature. Here the rings of every single-ring polygon are
gathered into one array and built with one ``shapely.polygons`` call (axis-aligned rectangles,
the tiles, need no validity check), and records are made from their fields directly.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from histobridge.qupath.annotations import PathObject


def simple_polygons(features: list[Any], minimum: int = 1) -> dict[int, BaseGeometry]:
    """Polygons of plain features built in one go, keyed by id(geometry).

    Only single-ring polygons that are closed, finite, valid and have an area are taken: for them
    the per-object path (``shape`` then ``area_geometry``) would return the same polygon with no
    note. Everything else (holes, other types, bad coordinates, child objects) is left to that path,
    as is everything when fewer than ``minimum`` polygons qualify.
    """
    geoms: list[Any] = []
    rings: list[Any] = []
    for f in features:
        g = f.get("geometry") if type(f) is dict and f.get("type") == "Feature" else None
        if type(g) is dict and g.get("type") == "Polygon":
            c = g.get("coordinates")
            if type(c) is list and len(c) == 1 and type(c[0]) is list and len(c[0]) >= 4:
                geoms.append(g)
                rings.append(c[0])
    if len(geoms) < max(minimum, 1):
        return {}
    points = _ring_points(rings)
    if points is None:
        return {}
    lengths = np.fromiter(map(len, rings), np.int64, len(rings))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ends = starts + lengths - 1
    finite = np.minimum.reduceat(np.isfinite(points).all(axis=1), starts)
    closed = (points[starts] == points[ends]).all(axis=1)
    take = finite & closed
    if not take.any():
        return {}
    index = np.repeat(np.arange(int(take.sum())), lengths[take])
    built = shapely.polygons(shapely.linearrings(points[np.repeat(take, lengths)], indices=index))
    box = _rectangles(points, starts, lengths)[take]
    good = box.copy()
    if not box.all():
        rest = ~box
        good[rest] = shapely.is_valid(built[rest]) & (shapely.area(built[rest]) > 0)
    taken = np.flatnonzero(take).tolist()
    pairs = zip(taken, built.tolist(), good.tolist(), strict=True)
    return {id(geoms[i]): poly for i, poly, ok in pairs if ok}


def _ring_points(rings: list[Any]) -> np.ndarray | None:
    """All ring points as one (N, 2) float array; None when any point is not two numbers."""
    points = list(itertools.chain.from_iterable(rings))
    if not set(map(type, points)) <= {list, tuple} or set(map(len, points)) != {2}:
        return None
    numbers = list(itertools.chain.from_iterable(points))
    if not set(map(type, numbers)) <= {float, int}:  # bool, str, None, lists: the per-object path decides
        return None
    return np.array(numbers, dtype=np.float64).reshape(-1, 2)


def _rectangles(points: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Rings of five points, closed, tracing an axis-aligned rectangle of positive area.

    Such a ring is always valid: these skip GEOS's validity check.
    """
    out = np.zeros(len(starts), dtype=bool)
    five = np.flatnonzero(lengths == 5)
    if not five.size:
        return out
    p = points[starts[five, None] + np.arange(5)]  # (k, 5, 2)
    x, y = p[..., 0], p[..., 1]
    closed = (x[:, 0] == x[:, 4]) & (y[:, 0] == y[:, 4])
    # first edge horizontal, then vertical, horizontal, vertical; or the other way round
    h_first = (y[:, 0] == y[:, 1]) & (x[:, 1] == x[:, 2]) & (y[:, 2] == y[:, 3]) & (x[:, 3] == x[:, 0])
    v_first = (x[:, 0] == x[:, 1]) & (y[:, 1] == y[:, 2]) & (x[:, 2] == x[:, 3]) & (y[:, 3] == y[:, 0])
    area = (x[:, 0] != x[:, 2]) & (y[:, 0] != y[:, 2])
    out[five] = closed & (h_first | v_first) & area
    return out


_FIELDS = tuple(f for f in dataclasses.fields(PathObject) if f.init)
_DEFAULTS: dict[str, Any] = {
    f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    for f in _FIELDS
}


def bulk_record(**fields: Any) -> PathObject:
    """``PathObject(**fields)`` for a reader that has already checked every field.

    Set the way unpickling sets a record (a new instance, its attributes filled in): the generated
    ``__init__`` costs ~5 µs a record, half of a bulk read. ``geometry`` must be a geometry, the one
    thing ``__post_init__`` would fix up; tests check the result equals the constructor's.
    """
    obj: PathObject = object.__new__(PathObject)
    values = obj.__dict__
    values.update(_DEFAULTS)
    values.update(fields)
    return obj
