"""abm-ml: account prioritisation for account-based marketing."""

__version__ = "0.1.0"
