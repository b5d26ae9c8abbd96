"""``python -m distill.services <command>``: see :mod:`distill.services.servers`."""

import sys

from distill.services.servers import main

sys.exit(main())
