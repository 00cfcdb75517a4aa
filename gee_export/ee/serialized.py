"""Reading serialized Earth Engine graphs (the Cloud API JSON a request would carry).

The fake pixel server decodes request expressions with it, and tests assert on graphs with it.

The Cloud API encoding deduplicates shared sub-expressions into ``values``; :func:`calls` walks
each stored node once (so counts are of distinct invocations), and :func:`arg` resolves one
argument fully for assertions on constants.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def encode(obj) -> dict[str, Any]:
    """The Cloud API JSON graph of an ee object, exactly what would be sent to the server."""
    import ee

    return json.loads(json.dumps(ee.serializer.encode(obj, for_cloud_api=True)))


class Graph:
    def __init__(self, obj) -> None:
        self.graph = obj if isinstance(obj, dict) and "values" in obj else encode(obj)
        self.values = self.graph["values"]
        self._cache: dict[str, Any] = {}

    def resolve(self, node: Any) -> Any:
        """``node`` with every value reference inlined (memoised per reference)."""
        if isinstance(node, dict):
            if "valueReference" in node:
                ref = node["valueReference"]
                if ref not in self._cache:
                    self._cache[ref] = self.resolve(self.values[ref])
                return self._cache[ref]
            if "argumentNames" in node and isinstance(node.get("body"), str):
                return {"argumentNames": node["argumentNames"],
                        "body": self.resolve({"valueReference": node["body"]})}
            return {k: self.resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v) for v in node]
        return node

    def calls(self) -> Iterator[dict[str, Any]]:
        """Every function invocation stored in the graph, each once (references not followed)."""
        def walk(node: Any) -> Iterator[dict[str, Any]]:
            if isinstance(node, dict):
                if "functionInvocationValue" in node:
                    inv = node["functionInvocationValue"]
                    yield {"functionName": inv.get("functionName", "<expression>"),
                           "arguments": inv.get("arguments", {})}
                for v in node.values():
                    yield from walk(v)
            elif isinstance(node, list):
                for v in node:
                    yield from walk(v)

        for value in self.values.values():
            yield from walk(value)


def calls(obj) -> list[dict[str, Any]]:
    return list(Graph(obj).calls())


def names(obj) -> list[str]:
    return [c["functionName"] for c in calls(obj)]


def find(obj, name: str) -> list[dict[str, Any]]:
    """Invocations of ``name`` with their arguments fully resolved."""
    graph = Graph(obj)
    return [{"functionName": name, "arguments": graph.resolve(c["arguments"])}
            for c in graph.calls() if c["functionName"] == name]


def first_call(obj, name: str) -> dict[str, Any]:
    found = find(obj, name)
    if not found:
        raise AssertionError(f"{name} not in graph")
    return found[0]


def constant(argument: dict[str, Any]) -> Any:
    """The constant held by a resolved argument (constantValue or arrayValue of constants)."""
    if "constantValue" in argument:
        return argument["constantValue"]
    if "arrayValue" in argument:
        return [constant(v) for v in argument["arrayValue"]["values"]]
    raise AssertionError(f"not a constant: {str(argument)[:200]}")


def constants(node: Any) -> Iterator[Any]:
    """Every constantValue below a resolved node."""
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
    return [constant(c["arguments"]["expression"]) for c in find(obj, "Image.parseExpression")]
