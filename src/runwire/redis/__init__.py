"""The Redis backend: everything runwire keeps in Redis (or Valkey), in one package.

* :mod:`runwire.redis.engine`: the engine (per-user streams, live channels);
* :mod:`runwire.redis.subscriptions`: which users a node must be subscribed to;
* :mod:`runwire.redis.snapshots`: run snapshots any node can read;
* :mod:`runwire.redis.workers`: idempotency keys, the run queue and its dispatcher;
* :mod:`runwire.redis.worker`: ``runwire worker``, the process that runs agents;
* :mod:`runwire.redis.control`: commands to every node (disconnect a user).

Requires the ``redis`` extra (``pip install runwire[redis]``). Nothing outside this
package imports redis-py.
"""
