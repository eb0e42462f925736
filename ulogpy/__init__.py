"""ulogpy: a Netfilter logging daemon compatible with ulogd 2.0.8 configurations."""

__version__ = "0.1.0"
ULOGD_COMPAT_VERSION = "2.0.8"
