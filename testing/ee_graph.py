"""Reading serialized Earth Engine graphs (the Cloud API JSON a request would carry).

The fake pixel server decodes request expressions with it, and tests assert on graphs with it;
the library never reads a graph back, so it lives here, beside the fakes.

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


# ---------------------------------------------------------------- array ranks
# The server checks array ranks only when it computes pixels, so a graph that indexes a 2-D
# array with one coordinate serializes fine and fails on Earth Engine. These rules let an
# offline check find that: the rank each array-producing call gives, and what each indexing
# or reducing call requires of it.
_RANK_KEEPING = ("Image.arraySort", "Image.arraySlice", "Image.arrayReduce")


def array_rank_errors(obj) -> list[str]:
    """Every place where the graph of ``obj`` indexes or reduces an array of another rank.

    Ranks are tracked through ``Image.neighborhoodToArray`` (2-D), ``Image.toArray`` (1-D from
    scalar bands, or one more axis), ``arraySort`` / ``arraySlice`` / ``arrayReduce`` (rank
    kept; the axes named must exist), ``arrayProject`` (as many axes as it keeps), and every
    other call (the highest rank among its arguments: element-wise operations broadcast a
    scalar over an array). ``arrayGet`` needs a position with one band per axis and
    ``arrayFlatten`` one label list per axis; both give scalars. Images entering a mapped
    function are scalar (this project maps over collections of scalar images).
    """
    checker = _RankChecker(obj if isinstance(obj, Graph) else Graph(obj))
    for value in checker.graph.values.values():
        for call in _invocations(value):
            checker.rank(call)
    return sorted(set(checker.errors))


class _RankChecker:
    """The rank of every array a graph makes, and the errors of the calls that misuse one."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.ranks: dict[int, int] = {}
        self.errors: list[str] = []

    def consts(self, node: Any) -> Any:
        try:
            return constant(self.graph.resolve(node))
        except AssertionError:
            return None

    def bands(self, node: Any) -> int | None:
        """How many bands an image argument has, where the graph says it (else None)."""
        node = self.graph.resolve(node)
        inv = node.get("functionInvocationValue") if isinstance(node, dict) else None
        if inv is None:
            return None
        name, args = inv.get("functionName"), inv.get("arguments", {})
        if name == "Image.constant":
            value = self.consts(args.get("value"))
            return len(value) if isinstance(value, list) else 1
        if name == "Image.addBands":
            parts = [self.bands(args.get("dstImg")), self.bands(args.get("srcImg"))]
            return None if None in parts else sum(p for p in parts if p is not None)
        if name == "Image.select":
            selectors = self.consts(args.get("bandSelectors"))
            return len(selectors) if isinstance(selectors, list) else None
        return None

    def rank(self, node: Any) -> int:
        if isinstance(node, list):
            return max((self.rank(v) for v in node), default=0)
        if not isinstance(node, dict):
            return 0
        if "valueReference" in node:
            return self.rank(self.graph.values[node["valueReference"]])
        if "arrayValue" in node:
            return self.rank(node["arrayValue"].get("values", []))
        inv = node.get("functionInvocationValue")
        if inv is None:  # constants, argument references, function definitions
            return 0
        key = id(node)
        if key not in self.ranks:
            self.ranks[key] = self.invocation_rank(inv)
        return self.ranks[key]

    def invocation_rank(self, inv: dict[str, Any]) -> int:
        name = inv.get("functionName", "<expression>")
        args = inv.get("arguments", {})
        rule = {"Image.neighborhoodToArray": self._neighborhood, "Image.toArray": self._to_array,
                "Image.arrayProject": self._project, "Image.arrayGet": self._get,
                "Image.arrayFlatten": self._flatten,
                **{keeping: self._keeping for keeping in _RANK_KEEPING}}.get(name)
        if rule is not None:
            return rule(name, args)
        return max((self.rank(v) for v in args.values()), default=0)

    def _axes_in(self, name: str, axes: Any, r: int) -> None:
        for axis in axes or []:
            if isinstance(axis, int) and not 0 <= axis < r:
                self.errors.append(f"{name}: axis {axis} of a {r}-D array")

    def _neighborhood(self, name: str, args: dict[str, Any]) -> int:
        if self.rank(args.get("image")):
            self.errors.append(f"{name}: its input must be scalar, got a "
                               f"{self.rank(args.get('image'))}-D array")
        return 2

    def _to_array(self, name: str, args: dict[str, Any]) -> int:
        axis = self.consts(args["axis"]) if "axis" in args else 0
        return max(self.rank(args.get("image")), int(axis or 0) + 1)

    def _keeping(self, name: str, args: dict[str, Any]) -> int:
        r = self.rank(args.get("input", args.get("image")))
        axes = self.consts(args["axes"]) if "axes" in args else [
            self.consts(args["axis"]) if "axis" in args else 0]
        if r == 0:
            self.errors.append(f"{name}: its input is not an array")
        self._axes_in(name, axes, r)
        return r

    def _project(self, name: str, args: dict[str, Any]) -> int:
        axes = self.consts(args.get("axes")) or []
        self._axes_in(name, axes, self.rank(args.get("input")))
        return len(axes)

    def _get(self, name: str, args: dict[str, Any]) -> int:
        r = self.rank(args.get("image"))
        n = self.bands(args.get("position"))
        if r == 0:
            self.errors.append(f"{name}: its input is not an array")
        elif n is not None and n != r:
            self.errors.append(f"{name}: a position of {n} coordinate(s) in a {r}-D array")
        return 0

    def _flatten(self, name: str, args: dict[str, Any]) -> int:
        r = self.rank(args.get("image"))
        labels = self.consts(args.get("coordinateLabels"))
        if isinstance(labels, list) and len(labels) != r:
            self.errors.append(f"{name}: {len(labels)} label list(s) for a {r}-D array")
        return 0


def _invocations(node: Any) -> Iterator[dict[str, Any]]:
    """Every invocation node below ``node`` (references not followed)."""
    if isinstance(node, dict):
        if "functionInvocationValue" in node:
            yield node
        for v in node.values():
            yield from _invocations(v)
    elif isinstance(node, list):
        for v in node:
            yield from _invocations(v)
