"""Configuration: ulogd.conf and ulogpy.toml, one pydantic model behind both."""
