"""``python -m docify_provider.cli``: the ``airflow-dify`` console script."""

import sys

from docify_provider.cli.dify_login import main

sys.exit(main())
