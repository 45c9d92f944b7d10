"""`python -m hemostat.sim`: see hemostat.sim.app.main."""

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
