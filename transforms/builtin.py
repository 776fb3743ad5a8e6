"""Python transforms shipped with the hub (see :mod:`transforms.hooks`)."""

from __future__ import annotations

from typing import Any

from transforms.hooks import python_transform


@python_transform("boss_flat_order")
def boss_flat_order(payload: dict[str, Any]) -> dict[str, Any]:
    """BOSS drop files are flat CSV rows: fold the address columns into one canonical address."""
    out = dict(payload)
    city = out.pop("city", None)
    detail = out.pop("address", None)
    province = out.pop("province", None)
    if city or detail:
        out["addresses"] = [{"role": "install", "city": city or "", "detail": detail or "", "province": province}]
    bw = out.get("bandwidth_mbps")
    if isinstance(bw, str) and bw.strip():
        try:
            out["bandwidth_mbps"] = int(bw)
        except ValueError:
            raise ValueError(f"bandwidth_mbps {bw!r} is not a number") from None
    elif bw == "":
        out.pop("bandwidth_mbps")
    return out


@python_transform("strip_blanks")
def strip_blanks(payload: dict[str, Any]) -> dict[str, Any]:
    """Fixed-width and CSV exports pad with spaces; empty strings mean 'not given'."""
    return {k: (v.strip() if isinstance(v, str) else v) for k, v in payload.items()
            if not (isinstance(v, str) and not v.strip())}
