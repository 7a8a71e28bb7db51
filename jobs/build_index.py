"""Entry point for ``ray job submit --working-dir . -- python jobs/build_index.py --config job.yaml``."""

import sys

from raymap.jobs.build_index import main

sys.exit(main())
