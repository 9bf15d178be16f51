#!/usr/bin/env python3
"""The Voter benchmark client: the same program as ``flowstate voter``.

    python bench/voter.py --servers localhost:21212 --connections 4 --inflight 64
    python bench/voter.py --help

The implementation is flowstate/voterbench.py (installed with the
package); this file only runs it from a checkout.
"""

import sys

from flowstate.voterbench import main

if __name__ == "__main__":
    sys.exit(main(prog="bench/voter.py"))
