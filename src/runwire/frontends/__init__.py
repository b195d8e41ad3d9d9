"""The front-ends users already have, as sans-I/O translators for runwire's HTTP routes.

- :mod:`runwire.frontends.agui`: AG-UI (CopilotKit, ``@ag-ui/client``); needs the
  ``agui`` extra (``ag-ui-protocol``), so it is not imported here.
- :mod:`runwire.frontends.aisdk`: the AI SDK's UI message stream (``useChat``).
- :mod:`runwire.frontends.base`: the feeding contract both follow, request errors.
- :mod:`runwire.frontends.sse`: SSE framing and stream positions (``epoch:offset``).

docs/frontends.md has the mapping tables and how to point each client at runwire.
"""

from __future__ import annotations

from runwire.frontends.base import Frame, InvalidRequest, RunTranslator
from runwire.frontends.sse import HEARTBEAT, EventId

__all__ = ["HEARTBEAT", "EventId", "Frame", "InvalidRequest", "RunTranslator"]
