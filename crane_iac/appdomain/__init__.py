"""App domains: a load balancer, web servers and a storage server, each a container on a libvirt host, configured
with the playbooks and files shipped here."""
