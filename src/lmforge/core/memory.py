"""Memory a process used, measured the same way everywhere (no torch import: a child that
measures itself must not pay for it)."""

from __future__ import annotations


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since it started running its program.

    Linux's ``VmHWM`` belongs to the address space, which ``exec`` replaces; ``ru_maxrss``
    survives ``exec``, so a ``spawn`` child of a large parent would report the parent's peak
    (every artefact then showed the same 1.7 GB here)."""
    import resource

    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
