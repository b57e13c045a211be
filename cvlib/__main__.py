import sys

from cvlib.cli import main

sys.exit(main())
