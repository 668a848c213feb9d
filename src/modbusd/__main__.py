from modbusd.cli import main

raise SystemExit(main())
