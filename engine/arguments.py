"""argparse types shared by `python -m engine` (engine/cli.py) and its `batch` subcommand (engine/batch/driver.py),
in a module of their own so that neither imports the other for them."""
from __future__ import annotations

import argparse
from pathlib import Path


def path_arg(text: str) -> Path:
    """An argparse type: a non-empty path (an empty string would otherwise mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a non-empty path (an empty string would mean the current folder)")
    return Path(text)
