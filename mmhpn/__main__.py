"""`python -m mmhpn` is the `mmhpn` command (and what `torchrun -m mmhpn` starts)."""
import sys

from mmhpn.cli import main

sys.exit(main())
