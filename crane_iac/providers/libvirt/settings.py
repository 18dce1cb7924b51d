"""A libvirt endpoint's own keys in crane.toml (beside ``type`` and ``uri``, which every endpoint has), written on
the stack for its default endpoint or under ``[stacks.NAME.providers.ENDPOINT]``. crane.toml's loader validates
them with this model whenever the project loads, reporting an unknown key with the one meant."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LibvirtSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    #: the ``<domain type=...>`` crane defines guests with (default: ``qemu`` on real hosts, ``test`` on the sandbox)
    domain_type: str | None = None
    #: seconds apply waits for a started VM to lease an address on each DHCP network (0: do not wait)
    address_timeout: float = Field(default=120.0, ge=0, le=3600)
    #: seconds a guest gets to shut down (ACPI) before it is powered off, when apply stops or restarts it
    shutdown_timeout: float = Field(default=30.0, ge=0, le=3600)
    #: whether the machine running crane reaches the guests' addresses (default: yes for a host without a remote
    #: hostname in its uri, no for the sandbox and remote hosts)
    reach_guests: bool | None = None
