"""Start the arq worker: ``python run_worker.py`` (``--check`` reports its health,
``--processes N`` runs N worker processes side by side); see :mod:`tasks.runner`."""

import sys

from tasks.runner import main

if __name__ == "__main__":
    sys.exit(main())
