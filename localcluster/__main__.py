"""Entry point: python -m localcluster up|down|status|restart <component>|logs <component>."""
import sys

from .cli import main

sys.exit(main())
