"""Build script: the package is pure Python plus compiled extensions listed here.

setuptools reads the metadata from pyproject.toml; this file only declares the extension
modules (the Cython backend of issue 3 adds its ``.pyx`` sources to ``EXTENSIONS``).
"""

from setuptools import setup

EXTENSIONS = []

setup(ext_modules=EXTENSIONS)
