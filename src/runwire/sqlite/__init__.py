"""The ``sqlite:///path`` backend's parts: the file (:mod:`.db`), idempotency keys
(:mod:`.claims`) and run snapshots (:mod:`.snapshots`). The engine itself is
:mod:`runwire.engines.sqlite`; :mod:`.backend` wires them for one URL."""
