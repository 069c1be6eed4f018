"""``python -m launcher``: parse the command line, run the job, exit with its status."""

import sys

from .cli import parse_args
from .front import launch


def main(argv=None):
    return launch(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
