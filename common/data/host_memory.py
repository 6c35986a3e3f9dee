"""How much memory this process may use: the machine's, or its cgroup's limit if lower.

Datasets here live whole in memory, so an image size that cannot fit is refused before a
decode that would end in the kernel's out-of-memory kill (no message, a half-built cache).
"""

import dataclasses
import os
from collections.abc import Iterator

# Where the kernel names this process's cgroups, and where their hierarchies are mounted.
_PROC_CGROUP = "/proc/self/cgroup"
_CGROUP_ROOT = "/sys/fs/cgroup"
# The memory limit's file in cgroup v2 (the unified hierarchy, mounted at the root) and
# in v1's memory controller (mounted at root/memory); "max" (v2) or a huge number (v1)
# when a group sets none.
_V2_LIMIT = "memory.max"
_V1_LIMIT = "memory.limit_in_bytes"


@dataclasses.dataclass(frozen=True)
class HostMemory:
  """Bytes this process may use, and where that number comes from (for messages)."""
  bytes: int
  source: str  # "this machine's memory" or "the cgroup memory limit in <file>"


def _physical_bytes() -> int | None:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):  # not POSIX (Windows) or not reported
    return None


def _read(path: str) -> str | None:
  try:
    with open(path) as f:
      return f.read().strip()
  except OSError:
    return None


def _limit_files(proc_cgroup: str, root: str) -> Iterator[str]:
  """The limit files of this process's cgroups and of the groups above them that bind it.

  A limit binds every group below it, so a job step of a batch scheduler (a Slurm job's
  limit sits several levels down, e.g. ``/system.slice/slurmstepd.scope/job_7``) is held by
  the lowest limit on its path, not only by the hierarchy's root.

  Args:
    proc_cgroup: the ``/proc/self/cgroup`` file: ``id:controllers:path`` per line; v2's
      line has no controllers, v1's memory line names ``memory`` among them.
    root: where the hierarchies are mounted.

  Yields:
    Paths, deepest group first; some may not exist (a container without its own cgroup
    namespace sees the host's path, which is not mounted inside it), so the roots' files
    always come last.
  """
  lines = (_read(proc_cgroup) or "").splitlines()
  for line in lines:
    parts = line.split(":", 2)
    if len(parts) != 3:
      continue
    _, controllers, path = parts
    v1 = bool(controllers)
    if v1 and "memory" not in controllers.split(","):
      continue
    segments = [s for s in path.split("/") if s]
    if ".." in segments:  # outside this cgroup namespace's root: not mounted here
      continue
    base = os.path.join(root, "memory") if v1 else root
    for depth in range(len(segments), 0, -1):
      group = os.path.join(base, *segments[:depth])
      # v1 groups may opt out of hierarchical accounting (memory.use_hierarchy 0, before
      # Linux 5.11): then their limit does not bind the groups below them.
      if v1 and depth < len(segments) and _read(
          os.path.join(group, "memory.use_hierarchy")) == "0":
        continue
      yield os.path.join(group, _V1_LIMIT if v1 else _V2_LIMIT)
  yield os.path.join(root, _V2_LIMIT)
  yield os.path.join(root, "memory", _V1_LIMIT)


def _cgroup_limit(proc_cgroup: str, root: str) -> HostMemory | None:
  """The lowest memory limit set on this process's cgroups, or None when none is set."""
  limits = []
  for path in _limit_files(proc_cgroup, root):
    text = _read(path)
    if text is not None and text.isdigit():
      limits.append(HostMemory(int(text), f"the cgroup memory limit in {path}"))
  return min(limits, key=lambda m: m.bytes) if limits else None


def host_memory() -> HostMemory | None:
  """This machine's physical memory, or its cgroups' lowest memory limit when lower.

  Returns:
    The bytes and their source, or None when neither can be read (the caller then skips
    its check).
  """
  physical = _physical_bytes()
  known = [m for m in (HostMemory(physical, "this machine's memory") if physical else None,
                       _cgroup_limit(_PROC_CGROUP, _CGROUP_ROOT)) if m]
  return min(known, key=lambda m: m.bytes) if known else None
