"""Entry point for ``ray job submit --working-dir . -- python jobs/explore.py --config job.yaml``."""

import sys

from raymap.jobs.explore import main

sys.exit(main())
