import sys

from diffgen.cli import main

sys.exit(main())
