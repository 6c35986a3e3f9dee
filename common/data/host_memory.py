"""How much memory this process may use: the machine's, or its container's limit if lower.

Datasets here live whole in memory, so an image size that cannot fit is refused before a
decode that would end in the kernel's out-of-memory kill (no message, a half-built cache).
"""

import os

# cgroup v2 and v1 limits of the process's container; "max" or a huge number when unset.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _physical_bytes() -> int | None:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):  # not POSIX (Windows) or not reported
    return None


def _cgroup_bytes() -> int | None:
  for path in _CGROUP_LIMITS:
    try:
      with open(path) as f:
        text = f.read().strip()
    except OSError:
      continue
    if text.isdigit():
      return int(text)
  return None


def host_memory_bytes() -> int | None:
  """This machine's physical memory, or its container's limit when that is lower.

  Returns:
    Bytes, or None when neither can be read (the caller then skips its check).
  """
  known = [b for b in (_physical_bytes(), _cgroup_bytes()) if b]
  return min(known) if known else None
