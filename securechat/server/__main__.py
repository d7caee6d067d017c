"""``python -m securechat.server``: the same as ``securechat-server``."""

from securechat.server.cli import main

raise SystemExit(main())
