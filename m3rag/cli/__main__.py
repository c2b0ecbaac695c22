"""``python -m m3rag.cli``: the ``m3rag`` command."""

import sys

from m3rag.cli import main

sys.exit(main())
