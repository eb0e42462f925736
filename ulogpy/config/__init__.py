"""Configuration: ulogd.conf and ulogpy.toml, one pydantic model behind both."""

#: Read when no file is named and it exists (else the embedded default); kept here, not
#: in `load`, so that the command line can name it without importing pydantic.
DEFAULT_CONFIG = "/etc/ulogpy.toml"
