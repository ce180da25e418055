import sys

from fakefs.cli import main

sys.exit(main())
