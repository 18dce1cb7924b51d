"""CloudInit: a cloud-init NoCloud seed, an ISO 9660 volume labelled ``cidata`` that a VM reads as a CD-ROM."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import InstanceOf, field_validator

from crane_iac.objects import Kind
from crane_iac.resources.base import Resource
from crane_iac.resources.pool import StoragePool, pool_reference


def _digest(*values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


class CloudInit(Resource):
    """A NoCloud seed volume in ``pool`` holding ``user-data``, ``meta-data`` and, when given, ``network-config``.

    ``user_data`` is the file as text (``#cloud-config …``, a ``#!`` script, MIME multipart) or a dict, written as
    ``#cloud-config`` followed by the dict as JSON (which YAML readers, cloud-init's included, accept);
    ``network_config`` likewise (a dict is written as JSON). ``meta_data`` defaults to ``instance-id:
    <name>-<digest of the contents>`` and ``local-hostname: <name>``; keys given override them. Attach the seed
    with ``VM(..., cloud_init=seed)``: the VM gets it as a read-only SATA CD-ROM.

    Changing the contents replaces the seed volume and every VM using it (their disks stay): the new domain boots
    with the new seed, and as the default instance-id follows the contents, cloud-init runs again on it.

    **Not a secret store**: everything given here is kept, as given, in crane's state and in plans (``crane plan``,
    ``--out``, ``--json``), and ends up in a volume the host's users can read. Do not put passwords or private keys in
    it; give cloud-init public SSH keys and let the guest fetch secrets from where they are kept.
    """

    kind = "cloudinit"
    #: a seed is a volume in its pool, sharing the volumes' names
    kind_rule = Kind("cloudinit", scope="pool", namespace="volume")

    user_data: str | dict[str, Any]
    meta_data: dict[str, Any] | None = None
    network_config: dict[str, Any] | str | None = None
    pool: InstanceOf[StoragePool] | str = "default"

    _pool = field_validator("pool")(classmethod(lambda _cls, value: pool_reference(value)))

    @field_validator("user_data", "meta_data", "network_config")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        """Written to the seed as JSON: only JSON values (str, numbers, bools, None, lists, dicts with str keys)."""
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"holds a value that cannot be written to the seed: {exc}") from None
        return value

    @property
    def pool_name(self) -> str:
        pool = self.pool
        return pool.physical_name if isinstance(pool, StoragePool) else pool

    def _seed_meta(self) -> dict[str, Any]:
        given = dict(self.meta_data or {})
        contents = _digest(self.user_data, self.network_config, {k: v for k, v in given.items() if k != "instance-id"})
        return {"instance-id": f"{self.physical_name}-{contents[:8]}", "local-hostname": self.physical_name, **given}

    @property
    def reference(self) -> str:
        """``pool/volume@digest``: how a VM names its seed; the digest of the contents makes a VM whose seed changes
        change too."""
        digest = _digest(self.user_data, self._seed_meta(), self.network_config)
        return f"{self.pool_name}/{self.physical_name}@{digest}"

    def properties(self) -> dict[str, Any]:
        return {
            "pool": self.pool_name,
            "user_data": self.user_data,
            "meta_data": self._seed_meta(),
            "network_config": self.network_config,
        }
