"""``python -m reproduce``: the paper's claims, one by one, against this code's runs."""

import common  # noqa: F401  (first: signals while a program starts)
