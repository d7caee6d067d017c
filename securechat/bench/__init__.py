"""The benchmarks: :mod:`~securechat.bench.cli` (``securechat-bench``, with IRC peers
from :mod:`~securechat.bench.irc` and tables from :mod:`~securechat.bench.report`) and
:mod:`~securechat.bench.store` (``securechat-store-bench``). Nothing else imports them.
"""
