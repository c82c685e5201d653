import sys

from amage_core.cli import main

sys.exit(main())
