# expect: hypervisor name 'shop-web' is already used by vm.shop-web
# expect-line: 11
# expect: shop.shop/vm.web:
from crane_iac import VM, Component


class Shop(Component):
    kind = "shop"

    def build(self) -> None:
        VM("web", vcpus=1, memory_mib=256)


VM("shop-web", vcpus=1, memory_mib=256)
Shop("shop")
