import sys

from trading.cli import main

sys.exit(main())
