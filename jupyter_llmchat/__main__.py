"""`python -m jupyter_llmchat …` is `jupyter llmchat …` (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
