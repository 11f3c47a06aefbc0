"""``python -m dptheory ...`` is the same as the ``dptheory`` console script."""

from .cli import main

raise SystemExit(main())
