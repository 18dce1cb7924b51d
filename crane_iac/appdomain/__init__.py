"""App domains: CRANE's web PaaS, a load balancer (HAProxy) in front of web servers sharing one storage server,
each a container (or VM) on a libvirt host, configured with the playbooks and files shipped here: the HAProxy
configuration and its check, the playbooks and roles, and (under files/) what is copied into the hosts."""
