from homelab.cli import main

raise SystemExit(main())
