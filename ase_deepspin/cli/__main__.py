"""``python -m ase_deepspin.cli``: the ``ase-deepspin`` command."""

import sys

from . import main

sys.exit(main())
