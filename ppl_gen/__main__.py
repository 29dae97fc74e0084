"""``python -m ppl_gen`` is ``ppl-gen``."""

import sys

from .cli import main

sys.exit(main())
