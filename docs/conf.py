"""Sphinx configuration of fastloss's documentation.

Build it from the repository root with

    sphinx-build -W --keep-going -b html docs docs/_build/html

The pages are Markdown (MyST). The API page imports fastloss and its adapters, so the
build needs the packages they wrap (PyTorch, JAX, Keras, XGBoost, LightGBM, CatBoost,
Dask): the ``test`` extra has them all.
"""

import importlib.util
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Document the checkout beside this file, not another installed copy.
sys.path.insert(0, str(ROOT))

# fastloss.keras runs on Keras's torch and jax backends, and Keras chooses its backend
# when it is imported (TensorFlow unless told otherwise): choose one before autodoc
# imports fastloss.keras.
if os.environ.get("KERAS_BACKEND") not in ("torch", "jax"):
    os.environ["KERAS_BACKEND"] = "torch" if importlib.util.find_spec("torch") else "jax"

import fastloss  # noqa: E402

project = "fastloss"
author = "the fastloss developers"
copyright = "the fastloss developers"
release = fastloss.__version__
version = ".".join(release.split(".")[:2])

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Links to a page's sections by their titles, as GitHub renders them: backends.md#threads.
myst_heading_anchors = 3

# The loss functions' signatures are generated from the registry; show them as written
# (keyword-only options with their defaults), in the order of the source.
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# The generated loss functions' docstrings (fastloss/__init__.py, _docstring) list the
# loss's own options under "Options:" and the keywords every loss takes under "Common
# keyword arguments:", Google style ("name: description", continuation lines indented):
# napoleon renders both as field lists under their own headings.
napoleon_custom_sections = [("Options", "params_style"), ("Common keyword arguments", "params_style")]

html_theme = "alabaster"
html_title = f"fastloss {release}"
html_static_path = []
