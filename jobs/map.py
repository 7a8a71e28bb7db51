"""Entry point for ``ray job submit --working-dir . -- python jobs/map.py --config job.yaml`` (see docs/cluster.md)."""

import sys

from raymap.jobs.map import main

sys.exit(main())
