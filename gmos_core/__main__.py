import sys

from gmos_core.cli.main import main

sys.exit(main())
