"""The `refinery` command: the group and its commands, one module per command group
(dedup, retrieval, export, train, serve); what they share is in cli/common.py."""

from __future__ import annotations

from refinery.cli import apply, dedup, export, frames, retrieval, review, serve, train  # noqa: F401 - each registers its commands
from refinery.cli.common import main

__all__ = ["main"]
