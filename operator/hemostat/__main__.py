"""`python -m hemostat` is the `hemostat` command."""

import sys

from .cli import main

sys.exit(main())
