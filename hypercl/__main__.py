"""``python -m hypercl ...`` (also what ``torchrun -m hypercl`` runs)."""

import sys

from .cli import main

sys.exit(main())
