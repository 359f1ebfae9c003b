from mythos.cli import main

raise SystemExit(main())
