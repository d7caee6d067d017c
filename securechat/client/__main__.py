"""``python -m securechat.client``: the same as ``securechat-client``."""

from securechat.client.cli import main

raise SystemExit(main())
