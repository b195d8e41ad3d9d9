"""``python -m ssotcheck``: see :func:`ssotcheck.cli.main`."""

from ssotcheck.cli import main

raise SystemExit(main())
