"""Built-in output plugins, one module each."""
