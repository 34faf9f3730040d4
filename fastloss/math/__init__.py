"""Scalar math shared by every backend: see :mod:`fastloss.math.primitives`."""
