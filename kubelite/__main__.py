"""``python -m kubelite``: the same as the ``kubelite`` command."""

import sys

from kubelite.cli.main import main

sys.exit(main())
