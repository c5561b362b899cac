"""`python -m larval` is the `larval` command."""

import sys

from larval.cli import main

sys.exit(main())
