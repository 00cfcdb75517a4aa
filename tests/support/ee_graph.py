"""Earth Engine graph helpers for tests: the package's graph reader plus expression evaluation."""

from __future__ import annotations

import numpy as np

from gee_export.ee import speckle
from testing.ee_graph import (  # noqa: F401  (re-exported for the test modules)
    Graph,
    array_rank_errors,
    calls,
    constant,
    constants,
    encode,
    expressions,
    find,
    first_call,
    names,
)


def loaded_ids(obj) -> list[str]:
    """Asset ids of every collection and image a graph loads (what a recipe reads)."""
    return [constant(c["arguments"]["id"])
            for name in ("ImageCollection.load", "Image.load")
            for c in find(obj, name)]


NP_FUNCS = {"max": np.maximum, "min": np.minimum, "sqrt": np.sqrt, "tan": np.tan,
            "cos": np.cos, "sin": np.sin, "atan": np.arctan}


def evaluate(formula: str, **values):
    """Evaluate an Earth Engine expression string of this package with numpy arrays."""
    return eval(formula.replace("&&", "&"), {"__builtins__": {}}, {**NP_FUNCS, **values})


def expression_of(graph: Graph, node: dict) -> str:
    """The formula of an expression image (an invocation of a parsed ``Image.expression``)."""
    ref = node["functionInvocationValue"]["functionReference"]
    parsed = graph.resolve(graph.values[ref])["functionInvocationValue"]
    assert parsed["functionName"] == "Image.parseExpression"
    return constant(parsed["arguments"]["expression"])


def gamma_map_regimes(z, enl: float) -> dict:
    """Read the Gamma-MAP graph's regime chain: thresholds on Ci^2 and what each regime gets.

    Expects ``rename(est.where(ci2 <= T1, mean).where(ci2 >= T2, pixel))`` and returns T1, T2
    and the images of the two where() values and of the estimate, resolved.
    """
    graph = Graph(speckle.gamma_map(z, 7, enl))
    top = graph.resolve(graph.values[graph.graph["result"]])["functionInvocationValue"]
    assert top["functionName"] == "Image.rename"
    outer = top["arguments"]["input"]["functionInvocationValue"]
    inner = outer["arguments"]["input"]["functionInvocationValue"]
    assert outer["functionName"] == inner["functionName"] == "Image.where"

    def threshold(test: dict, op: str) -> float:
        call = test["functionInvocationValue"]
        assert call["functionName"] == op
        assert expression_of(graph, call["arguments"]["image1"]) == speckle.COEF_VAR2  # Ci^2
        bound = call["arguments"]["image2"]["functionInvocationValue"]
        assert bound["functionName"] == "Image.constant"
        return constant(bound["arguments"]["value"])

    return {"lte": threshold(inner["arguments"]["test"], "Image.lte"),
            "gte": threshold(outer["arguments"]["test"], "Image.gte"),
            "low_value": inner["arguments"]["value"], "high_value": outer["arguments"]["value"],
            "estimate": expression_of(graph, inner["arguments"]["input"])}
