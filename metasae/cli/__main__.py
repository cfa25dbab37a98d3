"""`python -m metasae.cli ...`."""

import sys

from metasae.cli import main

sys.exit(main())
