"""``python -m securechat.bench``: the same as ``securechat-bench``."""

from securechat.bench.cli import main

raise SystemExit(main())
