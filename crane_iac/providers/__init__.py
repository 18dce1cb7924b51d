"""Providers: the narrow interface crane drives hypervisors through, one sub-package per provider."""
