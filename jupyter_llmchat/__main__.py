"""`python -m jupyter_llmchat …` is `jupyter llmchat …` (see kernel/cli.py)."""

import sys

from .kernel.cli import main

sys.exit(main())
