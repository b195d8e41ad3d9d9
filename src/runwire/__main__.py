from runwire.cli import main

raise SystemExit(main())
