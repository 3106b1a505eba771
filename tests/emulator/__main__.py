"""Entry point: ``python -m tests.emulator``."""

from __future__ import annotations

import sys

from tests.emulator.app import main

if __name__ == "__main__":
    sys.exit(main())
