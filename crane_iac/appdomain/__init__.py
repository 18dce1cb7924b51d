"""App domains: CRANE's web PaaS, a load balancer (HAProxy) in front of web servers sharing one storage server.

This package holds what runs in and configures those containers: the HAProxy configuration and its check,
and (as package data under files/) the scripts copied into the containers.
"""
