"""User and room names, as the protocol defines them (one place for the rule)."""

import re

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(name: str) -> bool:
    """True for 1-32 characters of ``a-z 0-9 _ -`` starting with a letter or digit."""
    return _NAME_RE.fullmatch(name) is not None and name.isascii()
