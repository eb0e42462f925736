"""Built-in filter plugins, one module each."""
