"""Build of the compiled fast path (everything else is declared in pyproject.toml).

`optional=True`: where gcc or the Python headers are missing the install still
succeeds, without `ulogpy._fastpath`, and the daemon runs the pure-Python path
(and says so once at start; see `ulogpy.fastpath`).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("ulogpy._fastpath", ["ulogpy/_fastpath.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"]),
])
