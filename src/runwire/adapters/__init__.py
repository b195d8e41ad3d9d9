"""Agents from the frameworks people use, as runwire agents.

- :mod:`runwire.adapters.langgraph` (``pip install 'runwire[langgraph]'``): a compiled
  LangGraph graph, or any LangChain Runnable that takes messages;
- :mod:`runwire.adapters.pydantic_ai` (``pip install 'runwire[pydantic-ai]'``): a
  pydantic-ai ``Agent``.

Neither framework is imported until one of its objects is adapted.
``RUNWIRE_AGENT=myapp.graph:graph`` may name the framework's object itself:
:func:`adapt` wraps it with the default options.
"""

from __future__ import annotations

import sys
from typing import Any

from runwire.agents.base import Agent

__all__ = ["adapt"]


def adapt(target: Any) -> Agent | None:
    """``target`` wrapped by its framework's adapter, or ``None`` when it is not an
    object of a supported framework.

    A framework is recognised only when its module is already imported (the object
    could not exist otherwise), so this never imports a framework.
    """
    runnables = sys.modules.get("langchain_core.runnables")
    if runnables is not None and isinstance(target, runnables.Runnable):
        from runwire.adapters.langgraph import LangGraphAgent

        return LangGraphAgent(target)
    pydantic_ai = sys.modules.get("pydantic_ai.agent")
    if pydantic_ai is not None and isinstance(target, pydantic_ai.AbstractAgent):
        from runwire.adapters.pydantic_ai import PydanticAIAgent

        return PydanticAIAgent(target)
    return None
