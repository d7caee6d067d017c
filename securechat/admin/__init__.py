"""The admin tools: :mod:`~securechat.admin.adduser` (``securechat-adduser``),
:mod:`~securechat.admin.certs` (``securechat-certs``) and :mod:`~securechat.admin.data`
(``securechat-admin``: backup, restore, export, stats)."""
