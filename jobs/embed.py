"""Entry point for ``ray job submit --working-dir . -- python jobs/embed.py INPUT --out OUT [raymap embed flags]``.

Progress (images/s, ETA) goes to the job log as log lines; the summary is printed as JSON at the end.
"""

import argparse
import logging
import sys

from raymap.cli.embed import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="jobs/embed.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(run(parser.parse_args(), progress=False))
    except (ValueError, FileNotFoundError) as e:
        print(f"embed job: error: {e}", file=sys.stderr)
        sys.exit(2)
