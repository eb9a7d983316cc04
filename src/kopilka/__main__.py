from kopilka.cli import main

raise SystemExit(main())
