"""``python -m dptheory ...`` is the same as the ``dptheory`` console script."""

from .cli import console_main

raise SystemExit(console_main())
