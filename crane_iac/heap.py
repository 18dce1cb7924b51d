"""The process's C heap: free pages handed back to the system (glibc's ``malloc_trim``; elsewhere nothing)."""

from __future__ import annotations


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system. glibc keeps pages that were freed: after libvirt's test
    driver parses its whole node file into a DOM (about 14 times the file's size) and frees it, ~145 MB for 10,000
    domains stay resident that nothing uses, and after a stack run its temporary objects' pages (about 8 MB for
    10,000 resources) stay under the libvirt open that is still growing to the run's memory peak."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return
    trim(0)
