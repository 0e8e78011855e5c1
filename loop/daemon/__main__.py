"""`python -m loop.daemon`: the detached daemon process that `loop start --daemon` starts."""

import sys

from loop.daemon import main

sys.exit(main())
