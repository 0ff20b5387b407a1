"""Resource usage in the seed's documented format (``b'cput=00:00:12 mem=13530kb'``)."""

from __future__ import annotations

from collections.abc import Callable

_KEYS = ("cpupercent", "cput", "mem", "vmem", "ncpus", "walltime")


def hms(seconds: float) -> str:
    """Format a duration as ``HH:MM:SS`` (hours may exceed 24)."""
    total = max(0, round(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def parse_hms(text: str) -> float | None:
    """Parse ``[D-]HH:MM:SS[.fff]``, ``MM:SS[.fff]`` or seconds; None when not a duration."""
    text = text.strip()
    if not text:
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
    parts = text.split(":")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        return None
    seconds = 0.0
    for n in nums:
        seconds = seconds * 60 + n
    return days * 86400 + seconds


def format_usage(
    *,
    cput: float | None = None,
    mem_kb: int | None = None,
    vmem_kb: int | None = None,
    walltime: float | None = None,
    ncpus: int | None = None,
    cpupercent: int | None = None,
) -> bytes:
    """Build the ``resource_usage`` bytes; items given as None are left out."""
    items: tuple[tuple[str, float | None, Callable[[float], str]], ...] = (
        ("cpupercent", cpupercent, _int), ("cput", cput, hms), ("mem", mem_kb, _kb),
        ("vmem", vmem_kb, _kb), ("ncpus", ncpus, _int), ("walltime", walltime, hms))
    return " ".join(f"{name}={fmt(value)}" for name, value, fmt in items if value is not None).encode("ascii")


def _int(value: float) -> str:
    return str(int(value))


def _kb(value: float) -> str:
    return f"{int(value)}kb"


def parse_usage(data: bytes) -> dict[str, str]:
    """Split usage bytes into a dict; raises ValueError on an unknown key or a bad item."""
    result: dict[str, str] = {}
    for item in data.decode("ascii").split():
        key, sep, value = item.partition("=")
        if not sep or key not in _KEYS or not value:
            raise ValueError(f"bad resource usage item {item!r}")
        result[key] = value
    return result


def memory_to_kb(text: str) -> int | None:
    """Convert a DRMS memory figure (``91232K``, ``1.5M``, ``2G``, ``13530kb``, bytes) to kB."""
    t = text.strip().lower().removesuffix("b")
    if not t:
        return None
    factors = {"k": 1, "m": 1024, "g": 1024**2, "t": 1024**3}
    try:
        if t[-1] in factors:
            return int(float(t[:-1]) * factors[t[-1]])
        return int(float(t) / 1024)
    except ValueError:
        return None
