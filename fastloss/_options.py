"""Validation of loss options (contract section 3): each checker returns the option's value in
canonical form or raises a ``ValueError``/``TypeError`` that names the option."""

import math
import numbers

import numpy as np

from ._arrays import is_device_array


class Option:
    """A keyword option of a loss: its name, default, meaning and checker."""

    __slots__ = ("name", "default", "doc", "check")

    def __init__(self, name, default, doc, check):
        self.name = name
        self.default = default
        self.doc = doc
        self.check = check

    def __repr__(self):
        return f"Option({self.name}={self.default!r})"


def _real(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def real_in(name, low=-math.inf, high=math.inf, low_open=False, high_open=False, what=None):
    """A real number in the interval from ``low`` to ``high`` (closed unless ``*_open``);
    an infinite bound also excludes infinities, and NaN is never in range."""

    def check(value):
        v = _real(name, value)
        above = v > low if low_open or low == -math.inf else v >= low
        below = v < high if high_open or high == math.inf else v <= high
        if not (above and below):
            raise ValueError(f"{name} must be {what}, got {value!r}")
        return v

    return check


def nonnegative(name):
    """A finite real number >= 0."""
    return real_in(name, 0.0, what="a finite number >= 0")


def finite(name):
    """Any finite real number."""
    return real_in(name, what="finite")


def closed_unit(name):
    """A real number in [0, 1]."""
    return real_in(name, 0.0, 1.0, what="in [0, 1]")


def open_unit(name):
    """A real number in (0, 1)."""
    return real_in(name, 0.0, 1.0, low_open=True, high_open=True, what="in the open interval (0, 1)")


def at_least_one(name):
    """A finite real number >= 1 (the order of a norm)."""
    return real_in(name, 1.0, what="a finite number >= 1")


def flag(name):
    """A boolean."""

    def check(value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return bool(value)

    return check


def one_of(name, choices):
    """One of the strings ``choices``."""

    def check(value):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        return value

    return check


def optional_real(name):
    """None or a finite real number."""

    def check(value):
        return None if value is None else finite(name)(value)

    return check


def optional_index(name):
    """None or an integer."""

    def check(value):
        if value is None:
            return None
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer or None, got {value!r}")
        return int(value)

    return check


def optional_array(name):
    """None, a real scalar or a real array (its shape is checked against the inputs later)."""

    def check(value):
        if value is None:
            return None
        if is_device_array(value):  # checked by the CUDA backend, which reads it
            return value
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        return arr

    return check
