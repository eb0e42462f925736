from ulogpy.cli import main

raise SystemExit(main())
