"""``python -m orcjit``: the lli-compatible command (see orcjit.cli)."""

from .cli import entry_point

entry_point()
