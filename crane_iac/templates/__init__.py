"""The template library: container roots and disk images a playbook customised once, kept on the host with a
manifest that says how to build them again (docs/decisions/templates.md).

Layers, lowest first: ``manifest`` (the record, pure), ``digests`` (what a base, a playbook and a built layer hash
to), ``library`` (the templates in the library's directory, their lineage and staleness), ``layers`` (the mounts
that put a template under a container: a loop-mounted ext4 image per template, an overlay of them over the base),
``build`` (a build on a real host: a container on a writable overlay, the user's playbook run in it through the
``crane_nsenter`` connection plugin); for VMs, ``images`` (a disk image opened without booting it: a qcow2 overlay
exported by qemu-storage-daemon over FUSE, its root file system loop-mounted) and ``image_build`` (the playbook run in
a chroot of it through the ``crane_chroot`` plug-in). The libvirt provider uses ``library`` and ``layers``; the
commands use everything."""
