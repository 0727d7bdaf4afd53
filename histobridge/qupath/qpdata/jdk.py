"""Handlers for the JDK classes found in QuPath data files, turned into plain Python values.

Each handler follows the class's documented serial form (JDK ``@serialData`` tags): default fields
for every class of the chain, then the custom data its ``writeObject`` appends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from histobridge.qupath.qpdata.stream import SC_WRITE_METHOD, ClassDesc, Handler, JavaStream

Custom = Callable[[JavaStream, dict[str, Any]], Any]


def serial_data(
    s: JavaStream, desc: ClassDesc, custom: dict[str, Custom] | None = None
) -> tuple[dict[str, Any], Any]:
    """Read all classes' fields; the custom data of a class named in ``custom`` goes to its reader.

    Returns the merged fields and the result of the last custom reader that ran.
    """
    fields: dict[str, Any] = {}
    result: Any = None
    for cd in desc.chain:
        fields.update(s.read_fields(cd))
        if cd.flags & SC_WRITE_METHOD:
            reader = (custom or {}).get(cd.name)
            if reader is None:
                if s.read_custom_items():
                    s.warn(f"custom data of {cd.name} ignored", key=f"custom:{cd.name}")
                continue
            result = reader(s, fields)
            s.end_block(cd.name)
    return fields, result


def _field(name: str, convert: Callable[[Any], Any] = lambda v: v) -> Handler:
    def handler(s: JavaStream, desc: ClassDesc, h: int) -> Any:
        fields, _ = serial_data(s, desc)
        return convert(fields.get(name))

    return handler


def _objects(s: JavaStream, n: int) -> list[Any]:
    if n < 0:
        raise s.error(f"negative collection size {n}")
    return [s.read_object() for _ in range(n)]


def _pairs(s: JavaStream, n: int) -> dict[Any, Any]:
    if n < 0:
        raise s.error(f"negative map size {n}")
    out: dict[Any, Any] = {}
    for _ in range(n):
        k = s.read_object()
        out[_hashable(k)] = s.read_object()
    return out


def _hashable(k: Any) -> Any:
    try:
        hash(k)
    except TypeError:
        return repr(k)
    return k


def _array_list(s: JavaStream, desc: ClassDesc, h: int) -> list[Any]:
    def custom(s: JavaStream, f: dict[str, Any]) -> list[Any]:
        s.block_int()  # capacity
        return _objects(s, int(f.get("size", 0)))

    return serial_data(s, desc, {"java.util.ArrayList": custom})[1] or []


def _hash_map(s: JavaStream, desc: ClassDesc, h: int) -> dict[Any, Any]:
    def custom(s: JavaStream, f: dict[str, Any]) -> dict[Any, Any]:
        s.block_int()  # bucket count
        return _pairs(s, s.block_int())

    return serial_data(s, desc, {"java.util.HashMap": custom})[1] or {}


def _tree_map(s: JavaStream, desc: ClassDesc, h: int) -> dict[Any, Any]:
    return serial_data(s, desc, {"java.util.TreeMap": lambda s, f: _pairs(s, s.block_int())})[1] or {}


def _hash_set(s: JavaStream, desc: ClassDesc, h: int) -> list[Any]:
    def custom(s: JavaStream, f: dict[str, Any]) -> list[Any]:
        s.block_int()  # capacity
        s.block_bytes(4)  # load factor
        return _objects(s, s.block_int())

    return serial_data(s, desc, {"java.util.HashSet": custom})[1] or []


COLL_SER = "java.util.CollSer"


def _coll_ser(s: JavaStream, desc: ClassDesc, h: int) -> Any:
    """``List.of``/``Set.of``/``Map.of`` (and ``List.copyOf``) write this proxy: a tag and the elements.

    The proxy is a top-level package-private class of ``java.util`` (declared in the source file of
    ``ImmutableCollections``), so its serialized name is ``java.util.CollSer``.
    """

    def custom(s: JavaStream, f: dict[str, Any]) -> Any:
        items = _objects(s, s.block_int())
        kind = int(f.get("tag", 1)) & 0xFF
        if kind == 3:
            return {_hashable(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
        return items

    return serial_data(s, desc, {COLL_SER: custom})[1]


def _uuid(s: JavaStream, desc: ClassDesc, h: int) -> uuid.UUID:
    f, _ = serial_data(s, desc)
    value = ((int(f.get("mostSigBits", 0)) & (2**64 - 1)) << 64) | (
        int(f.get("leastSigBits", 0)) & (2**64 - 1)
    )
    return uuid.UUID(int=value)


def _locale(s: JavaStream, desc: ClassDesc, h: int) -> str:
    f, _ = serial_data(s, desc)
    parts = [f.get("language") or "", f.get("country") or "", f.get("variant") or ""]
    return "_".join(parts).rstrip("_")


def _singleton_map(s: JavaStream, desc: ClassDesc, h: int) -> dict[Any, Any]:
    f, _ = serial_data(s, desc)
    return {_hashable(f.get("k")): f.get("v")}


def _empty(kind: type) -> Handler:
    def handler(s: JavaStream, desc: ClassDesc, h: int) -> Any:
        serial_data(s, desc)
        return kind()

    return handler


def _wrapped(s: JavaStream, desc: ClassDesc, h: int) -> Any:
    """Collections$Unmodifiable* / Synchronized* / Checked* wrappers: the wrapped collection."""
    f, _ = serial_data(s, desc)
    for key in ("m", "list", "s", "ss", "c"):
        if f.get(key) is not None:
            return f[key]
    return None


def _char(v: Any) -> str | None:
    return None if v is None else chr(v)


HANDLERS: dict[str, Handler] = {
    "java.lang.Integer": _field("value"),
    "java.lang.Long": _field("value"),
    "java.lang.Short": _field("value"),
    "java.lang.Byte": _field("value"),
    "java.lang.Double": _field("value"),
    "java.lang.Float": _field("value"),
    "java.lang.Boolean": _field("value", bool),
    "java.lang.Character": _field("value", _char),
    "java.util.ArrayList": _array_list,
    "java.util.Arrays$ArrayList": _field("a", lambda v: list(v or [])),
    "java.util.HashMap": _hash_map,
    "java.util.TreeMap": _tree_map,
    "java.util.HashSet": _hash_set,
    COLL_SER: _coll_ser,
    "java.util.UUID": _uuid,
    "java.util.Locale": _locale,
    "java.util.Collections$SingletonMap": _singleton_map,
    "java.util.Collections$SingletonList": _field("element", lambda v: [v]),
    "java.util.Collections$SingletonSet": _field("element", lambda v: [v]),
    "java.util.Collections$EmptyList": _empty(list),
    "java.util.Collections$EmptySet": _empty(list),
    "java.util.Collections$EmptyMap": _empty(dict),
}
for _kind in ("Collection", "List", "RandomAccessList", "Set", "SortedSet", "Map", "SortedMap"):
    for _wrap in ("Unmodifiable", "Synchronized"):
        HANDLERS[f"java.util.Collections${_wrap}{_kind}"] = _wrapped
