"""``python -m prefrl ...`` is the ``prefrl`` command."""

import sys

from prefrl.cli import main

sys.exit(main())
