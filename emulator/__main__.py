"""`python -m emulator`: run the CloudAgent emulator (--help lists every flag)."""

import sys

from emulator.server import main

sys.exit(main())
