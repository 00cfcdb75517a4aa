"""Reading serialized Earth Engine graphs in tests: resolve value references, list calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def encode(obj) -> dict[str, Any]:
    """The Cloud API JSON graph of an ee object, exactly what would be sent to the server."""
    import ee

    return json.loads(json.dumps(ee.serializer.encode(obj, for_cloud_api=True)))


def resolve(graph: dict[str, Any]) -> Any:
    """The graph as one nested structure with every ``valueReference`` inlined."""
    values = graph["values"]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "valueReference" in node:
                return walk(values[node["valueReference"]])
            out = {k: walk(v) for k, v in node.items() if k != "functionReference"}
            if "functionReference" in node:  # an expression's parsed function: inline it
                out["functionName"] = "<expression>"
                out["definition"] = walk(values[node["functionReference"]])
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(values[graph["result"]])


def calls(obj) -> Iterator[dict[str, Any]]:
    """Every ``functionInvocationValue`` of the graph of ``obj`` (or of a resolved graph)."""
    tree = resolve(encode(obj)) if not isinstance(obj, (dict, list)) else obj

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "functionInvocationValue" in node:
                yield node["functionInvocationValue"]
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    yield from walk(tree)


def names(obj) -> list[str]:
    return [c["functionName"] for c in calls(obj)]


def constants(node: Any) -> Iterator[Any]:
    """Every constantValue below ``node``."""
    if isinstance(node, dict):
        if "constantValue" in node:
            yield node["constantValue"]
        for v in node.values():
            yield from constants(v)
    elif isinstance(node, list):
        for v in node:
            yield from constants(v)


def expressions(obj) -> list[str]:
    """The expression strings passed to Image.parseExpression."""
    return [c["arguments"]["expression"]["constantValue"] for c in calls(obj)
            if c["functionName"] == "Image.parseExpression"]


def first_call(obj, name: str) -> dict[str, Any]:
    for c in calls(obj):
        if c["functionName"] == name:
            return c
    raise AssertionError(f"{name} not in graph")
