"""Agents: the API agents are written against, the runtime, and the demo agent."""

from __future__ import annotations

from runwire.agents.base import Agent, Run, ToolCall, ToolError, current_run, tool

__all__ = ["Agent", "Run", "ToolCall", "ToolError", "current_run", "tool"]
