"""A message refused by a limit leaves no idempotency key behind: retried with the
same id once the limit frees, it starts its run (was: the retry got the ``ack`` of a
run that never started, on the engines that record keys before the run starts)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from runwire.client import ClientError
from tests.deployments import Deployment
from tests.helpers import GatedAgent, collect_run, connect, running_gateway, types_of


async def _refused_then_retried(gateway_cm: object, agent: GatedAgent) -> None:
    user = f"refused-{uuid.uuid4().hex[:8]}"
    async with gateway_cm as gateway, connect(gateway, user) as client:  # type: ignore[attr-defined]
        first = await client.send_message("one", message_id="first")
        with pytest.raises(ClientError) as refused:
            await client.send_message("two", message_id="second")
        assert refused.value.code == "too_many_runs"
        agent.release.set()
        await collect_run(client, first["run_id"])
        retried = await client.send_message("two", message_id="second")
        assert retried["run_id"] != first["run_id"]
        frames = await collect_run(client, retried["run_id"])
        assert types_of(frames)[0] == "agent_started"
        assert types_of(frames)[-1] == "agent_completed"


async def test_a_refused_message_can_be_retried_with_its_id(deployment: Deployment) -> None:
    agent = GatedAgent()
    await _refused_then_retried(deployment(agent, max_concurrent_runs_per_user=1), agent)


async def test_a_refused_message_can_be_retried_with_its_id_on_sqlite(tmp_path: Path) -> None:
    agent = GatedAgent()
    engine = f"sqlite:///{tmp_path / 'runwire.db'}"
    await _refused_then_retried(
        running_gateway(agent, engine=engine, max_concurrent_runs_per_user=1), agent
    )
