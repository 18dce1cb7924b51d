"""Volume: a storage volume in a pool, optionally cloned from a base volume or image."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from crane_iac.resources.base import NAME_PATTERN, Resource


class Volume(Resource):
    """A disk. ``base`` is another Volume or an image path the new volume is backed by (copy on write)."""

    kind = "volume"

    capacity_gib: int = Field(ge=1, le=65536)
    pool: str = "default"
    format: Literal["qcow2", "raw"] = "qcow2"
    base: Volume | str | None = None

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid storage pool name")
        return value

    @field_validator("base")
    @classmethod
    def _base(cls, value: Volume | str | None) -> Volume | str | None:
        if isinstance(value, str) and not value.startswith("/"):
            raise ValueError(f"base image {value!r} must be an absolute path or a Volume")
        return value

    def properties(self) -> dict[str, Any]:
        base = self.base
        return {
            "capacity_gib": self.capacity_gib,
            "pool": self.pool,
            "format": self.format,
            "base": f"{base.pool}/{base.physical_name}" if isinstance(base, Volume) else base,
        }
