"""A view's per-event step as generated source text, to run alone or inline in its operator's step.

:mod:`freshet.pipelines.fixed_step` and :mod:`freshet.pipelines.sliding_step` write a
view's step as statements over the locals ``vs`` (the view's state), ``entity``, ``event``,
``ts``, ``partition``, ``offset``, ``emitted`` and ``late``, with every name they need
from outside prefixed by the view (``w<index>_``), so the steps of several views can run in
one function: :func:`freshet.pipelines.tiles.SourceOperator` inlines them all, saving a
call per event and view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class StepCode(NamedTuple):
    lines: list[str]  # statements at one level of indentation (4 spaces)
    env: dict[str, Any]  # the outside names they use


def step_function(code: StepCode, label: str) -> Callable[..., None]:
    """``process(vs, entity, event, ts, partition, offset, emitted, late)`` running ``code``."""
    text = "\n".join(["def process(vs, entity, event, ts, partition, offset, emitted, late):", *code.lines]) + "\n"
    env = dict(code.env)
    exec(compile(text, f"<freshet step {label}>", "exec"), env)  # noqa: S102 - generated from fixed templates
    process: Any = env["process"]
    process.__source__ = text
    return process  # type: ignore[no-any-return]


def indent(lines: list[str], by: str) -> list[str]:
    return [by + line for line in lines]
