"""``python -m netgraph`` is the ``netgraph`` command."""

import sys

from .cli import main

sys.exit(main())
