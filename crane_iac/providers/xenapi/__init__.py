"""The XenAPI provider (XenServer and XCP-ng pools, through the official ``XenAPI`` SDK). Its modules import the SDK
only when an endpoint is opened (``endpoint.open_endpoint``): loading a project reads the type's settings and rules
without it."""
