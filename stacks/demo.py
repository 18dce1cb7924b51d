"""The demo stack: a NAT network, an isolated backend network, two web servers, a database and an app domain."""

from crane_iac import VM, AppDomain, Network, Volume, WebTier, export, variable

lan = Network("lan", mode="nat", ipv4="10.77.0.0/24", ipv6="fd00:77::/64")
backend = Network("backend", mode="isolated", ipv4="10.78.0.0/24")

base = Volume("debian-base", capacity_gib=4)

for i in range(1, variable("web_count") + 1):
    disk = Volume(f"web-{i}-root", capacity_gib=8, base=base)
    web = VM(f"web-{i}", vcpus=1, memory_mib=512, max_memory_mib=2048, networks=[lan, backend], volumes=[disk])
    export(f"web-{i}-mac", web.macs[0])
    export(f"web-{i}-ipv4", web.ipv4)  # its DHCP lease (simulated on the sandbox)

db_disk = Volume("db-root", capacity_gib=20)
db = VM("db", vcpus=2, memory_mib=1024, networks=[backend], volumes=[db_disk], autostart=True)
export("db-uuid", db.uuid)

# An app domain (CRANE's web PaaS): a load balancer, web servers and a PostgreSQL storage server, each a container,
# configured by Ansible. On the sandbox the containers are recorded and the configuration runs are skipped (nothing
# runs there); with uri = "lxc:///system" they run for real (docs/guides/app-domains.md).
shop_net = Network("shop-net", mode="isolated", ipv4="10.79.0.0/24", dhcp=False)
shop = AppDomain("shop", network=shop_net, web=WebTier(size=variable("shop_web"), min=1, max=8))
