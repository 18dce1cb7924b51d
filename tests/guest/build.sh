#!/usr/bin/env bash
# Builds the tiny test guest from Debian packages: the cloud kernel, booted directly, and an initramfs of
# busybox-static with the virtio modules. Its init brings eth0 up with DHCP (retrying until bound) and serves
# HTTP on port 80 with busybox httpd; /cgi-bin/meminfo prints /proc/meminfo and /cgi-bin/fill?MIB fills a tmpfs
# (so tests can drive the guest's memory use). Output: DEST/vmlinuz and DEST/initrd.img (cached).
set -euo pipefail
DEST=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/crane/guest}
[ -s "$DEST/vmlinuz" ] && [ -s "$DEST/initrd.img" ] && { echo "$DEST"; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
apt-get download -q "$kernel_pkg" busybox-static >/dev/null
dpkg-deb -x linux-image-*.deb k
dpkg-deb -x busybox-static*.deb bb
version=$(ls k/lib/modules)
root=initramfs
mkdir -p $root/{bin,sbin,proc,sys,dev,tmp,run,www/cgi-bin,mem,lib/modules,usr/share/udhcpc}
cp bb/bin/busybox $root/bin/busybox
for tool in sh mount insmod ip udhcpc httpd mkdir cat dd sleep rm free df ifconfig route; do
    ln -s busybox $root/bin/$tool
done
mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net
virtio_balloon virtio_blk"
for m in $mods; do
    f=$(find k/lib/modules/$version -name "$m.ko*" | head -1)
    case "$f" in
        *.xz) xz -dc "$f" > $root/lib/modules/$m.ko ;;
        *.zst) zstd -qdc "$f" > $root/lib/modules/$m.ko ;;
        *) cp "$f" $root/lib/modules/$m.ko ;;
    esac
done
cat > $root/usr/share/udhcpc/default.script <<'SCRIPT'
#!/bin/sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
        echo "crane-guest: $interface bound $ip" > /dev/console ;;
esac
SCRIPT
chmod +x $root/usr/share/udhcpc/default.script
cat > $root/www/cgi-bin/meminfo <<'SCRIPT'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
cat /proc/meminfo
SCRIPT
cat > $root/www/cgi-bin/fill <<'SCRIPT'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
rm -f /mem/fill
[ "${QUERY_STRING:-0}" -gt 0 ] && dd if=/dev/zero of=/mem/fill bs=1M count="$QUERY_STRING" 2>/dev/null
echo "filled ${QUERY_STRING:-0} MiB"
SCRIPT
chmod +x $root/www/cgi-bin/*
echo "crane test guest" > $root/www/index.html
cat > $root/init <<'SCRIPT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /mem
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover \
         virtio_net virtio_balloon virtio_blk; do
    insmod /lib/modules/$m.ko 2>/dev/null
done
ip link set lo up
ip link set eth0 up
httpd -h /www -p 80
echo "crane-guest: httpd started" > /dev/console
while true; do
    udhcpc -i eth0 -f -t 5 -T 1 -A 1 -s /usr/share/udhcpc/default.script && break
    sleep 1
done
while true; do sleep 3600; done
SCRIPT
chmod +x $root/init
mkdir -p "$DEST"
(cd $root && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$DEST/initrd.img.tmp"
cp k/boot/vmlinuz-$version "$DEST/vmlinuz.tmp"
mv "$DEST/initrd.img.tmp" "$DEST/initrd.img"
mv "$DEST/vmlinuz.tmp" "$DEST/vmlinuz"
echo "$DEST"
