"""Field documentation read from the source: the attribute docstrings of a dataclass.

The configs document each field with a string right after it (``name: type = default`` then
``\"\"\"doc\"\"\"``), the convention Sphinx reads; :func:`attribute_docs` gives those strings to
code that shows them (``advmeta tune METHOD --params``).
"""

from __future__ import annotations

import ast
import inspect
import textwrap


def attribute_docs(cls: type) -> dict[str, str]:
    """{field: the first paragraph of its attribute docstring, on one line}.

    Returns an empty dict when the class's source is not available (a frozen app, a class made
    at run time): documentation is optional, never an error.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            out[node.target.id] = " ".join(nxt.value.value.split("\n\n")[0].split())
    return out
