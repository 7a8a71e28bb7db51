import sys

from raymap.cli import main

sys.exit(main())
