"""Boundary validation: small ``parse_*`` helpers whose errors name the allowed range and the value."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "B": 1,
    "K": 2**10,
    "KB": 10**3,
    "KIB": 2**10,
    "M": 2**20,
    "MB": 10**6,
    "MIB": 2**20,
    "G": 2**30,
    "GB": 10**9,
    "GIB": 2**30,
    "T": 2**40,
    "TB": 10**12,
    "TIB": 2**40,
}


def parse_bytes(value: int | float | str, name: str = "memory_budget") -> int:
    """Parse ``"2GiB"``, ``"512MB"`` or a number of bytes into a positive int."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        n = int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if m is None or m.group(2).upper() not in _UNITS:
            raise ValueError(f"{name}: cannot parse {value!r}; use e.g. '2GiB', '512MB' or bytes")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    else:
        raise ValueError(f"{name}: expected bytes as int or str like '2GiB', got {value!r}")
    if n <= 0:
        raise ValueError(f"{name}: must be > 0 bytes, got {value!r}")
    return n


def parse_positive_int(value: object, name: str) -> int:
    """An int >= 1 (bools refused), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return value


def parse_choice(value: str, allowed: tuple[str, ...] | list[str], name: str) -> str:
    """One of ``allowed``, else a ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(allowed)}")
    return value


def require_usable(requested: str, have: list[str], what: str) -> str:
    """An explicitly requested backend, if this process can use it; else a ValueError listing those it can."""
    if requested not in have:
        raise ValueError(f"{what} backend {requested!r} is not usable here; available: {have}")
    return requested


def format_bytes(n: float) -> str:
    """Human-readable GiB/MiB for logs."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
