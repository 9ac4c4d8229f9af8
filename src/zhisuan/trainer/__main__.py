import sys

from zhisuan.trainer.run import main

sys.exit(main())
