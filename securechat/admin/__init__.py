"""The admin tools: :mod:`~securechat.admin.adduser` (``securechat-adduser``) and
:mod:`~securechat.admin.certs` (``securechat-certs``)."""
