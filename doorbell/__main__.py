import sys

from doorbell.cli import main

sys.exit(main())
