"""Built-in plugins, installed as `ulogpy.plugins`."""
