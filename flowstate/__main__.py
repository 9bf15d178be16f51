from flowstate.cli import main

raise SystemExit(main())
