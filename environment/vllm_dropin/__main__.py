import sys

from vllm_dropin.cli import main

sys.exit(main())
