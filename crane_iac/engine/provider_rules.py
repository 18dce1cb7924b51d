"""A stack's resources checked against the rules of the provider type of each one's endpoint (Terraform's
ValidateResourceConfig): libvirt's vCPU cap, what its networks need. Called at plan time, before anything is read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from crane_iac.config import EndpointConfig
from crane_iac.errors import Diagnostic, DiagnosticsError
from crane_iac.providers.registry import ResourceRules, resource_rules

if TYPE_CHECKING:
    from crane_iac.loader import LoadedStack


def checked(loaded: LoadedStack, endpoints: Mapping[str, EndpointConfig]) -> LoadedStack:
    """``loaded``, once each resource passed the rules of its endpoint's provider type; else every problem at once,
    each with the resource's file:line and address (DiagnosticsError)."""
    rules: dict[str, ResourceRules | None] = {}
    problems: list[Diagnostic] = []
    for want in loaded.desired:
        config = endpoints.get(want.endpoint)
        if config is None:  # an endpoint crane.toml does not declare: the plan says so
            continue
        if config.type not in rules:
            rules[config.type] = resource_rules(config.type)
        check = rules[config.type]
        if check is not None:
            problems.extend(Diagnostic(p, want.file, want.line, want.address)
                            for p in check(want.kind, want.properties))
    if problems:
        raise DiagnosticsError(problems)
    return loaded
