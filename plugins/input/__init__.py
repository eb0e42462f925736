"""Built-in input plugins, one module each."""
