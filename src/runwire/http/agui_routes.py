"""The AG-UI endpoint (CopilotKit, ``@ag-ui/client``): start, reattach to and cancel runs.

Needs the ``agui`` extra (``ag-ui-protocol``); the gateway adds these routes when it is
installed. Under ``agui_path`` (default ``/agui``):

``POST <path>``
    Body: the client's ``RunAgentInput``. Starts a run of the token's user, thread
    ``threadId``, input the last user message's text; ``runId`` is the idempotency
    key (a retried POST follows the same run, replayed from its start). Answers the
    run as AG-UI events over SSE, to its end. Closing the request does not cancel
    the run.
``GET <path>/runs/{runId}/stream``
    Reattach: ``runId`` is the client's own (the idempotency key) or the run id of
    ``RUN_STARTED`` (runwire's). With
    ``Last-Event-ID`` (or ``?after=epoch:offset``) exactly what followed that event;
    without, the run from its start. A finished run replays to its end.
``POST <path>/runs/{runId}/cancel``
    Cancel the run (either id): ``200 {"run_id", "cancelled": true}`` with runwire's
    run id, ``404`` if not active.

Errors before any stream: JSON ``{"error", "message"}`` (see
:mod:`runwire.http.run_streams`; 400 ``invalid_request`` names the field).
"""

from __future__ import annotations

from runwire.frontends.agui import CONTENT_TYPE, AguiTranslator, parse_run_input
from runwire.frontends.sse import EventId
from runwire.http.message import HttpRequest, HttpResponse, StreamResponse, json_response
from runwire.http.router import Router
from runwire.http.run_streams import RunStreams, last_event_id, parsed, stream_response
from runwire.http.sse_follower import TranslatorFactory
from runwire.ids import Epoch

__all__ = ["add_agui_routes"]


def _translator(after: EventId | None) -> TranslatorFactory:
    def make(epoch: Epoch) -> AguiTranslator:
        return AguiTranslator(epoch, after=after)

    return make


def add_agui_routes(router: Router, streams: RunStreams, path: str) -> None:
    """Add the AG-UI routes under ``path`` (see the module)."""

    async def run(request: HttpRequest) -> StreamResponse:
        claims = streams.claims(request)
        asked = parsed(parse_run_input, request)
        follower = await streams.start(
            claims, asked.text, key=asked.run_id, thread_id=asked.thread_id, translator=_translator
        )
        return stream_response(follower, CONTENT_TYPE)

    async def stream(request: HttpRequest) -> StreamResponse:
        claims = streams.claims(request)
        after = last_event_id(request)
        snapshot = await streams.find(claims, request.params["run_id"])
        follower = await streams.replay(claims, snapshot, after, _translator)
        return stream_response(follower, CONTENT_TYPE)

    async def cancel(request: HttpRequest) -> HttpResponse:
        run_id = await streams.cancel(streams.claims(request), request.params["run_id"])
        return json_response(200, {"run_id": run_id, "cancelled": True})

    router.post(path, run)
    router.get(f"{path}/runs/{{run_id}}/stream", stream)
    router.post(f"{path}/runs/{{run_id}}/cancel", cancel)
