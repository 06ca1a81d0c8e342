"""``python -m fantasyid``: the ``fantasyid`` command."""

from __future__ import annotations

import sys

from fantasyid_cli.main import main

if __name__ == "__main__":
    main(sys.argv[1:])
