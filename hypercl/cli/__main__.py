"""``python -m hypercl.cli ...`` (the same as ``python -m hypercl``)."""

import sys

from .main import main

sys.exit(main())
