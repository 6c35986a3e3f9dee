"""How much memory this process may use: the machine's, or its cgroup's limit if lower.

Datasets here live whole in memory, so an image size that cannot fit is refused before a
decode that would end in the kernel's out-of-memory kill (no message, a half-built cache).
"""

import os
from collections.abc import Iterator

# Where the kernel names this process's cgroups, and where their hierarchy is mounted.
_PROC_CGROUP = "/proc/self/cgroup"
_CGROUP_ROOT = "/sys/fs/cgroup"
# The memory limit's file in cgroup v2 (the unified hierarchy) and in v1's memory
# controller; "max" (v2) or a huge number (v1) when a group sets none.
_V2_LIMIT = "memory.max"
_V1_LIMIT = os.path.join("memory", "memory.limit_in_bytes")


def _physical_bytes() -> int | None:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):  # not POSIX (Windows) or not reported
    return None


def _limit_files(proc_cgroup: str, root: str) -> Iterator[str]:
  """The limit files of this process's cgroups and of every group above them.

  A limit binds every group below it, so a job step of a batch scheduler (a Slurm job's
  limit sits several levels down, e.g. ``/system.slice/slurmstepd.scope/job_7``) is held by
  the lowest limit on its path, not only by the hierarchy's root.

  Args:
    proc_cgroup: the ``/proc/self/cgroup`` file: ``id:controllers:path`` per line; v2's
      line has no controllers, v1's memory line names ``memory`` among them.
    root: where the hierarchies are mounted (v2 at ``root``, v1's memory at ``root/memory``).

  Yields:
    Paths, deepest group first; some may not exist (a container without its own cgroup
    namespace sees the host's path, which is not mounted inside it), so the roots' files
    always come last.
  """
  try:
    with open(proc_cgroup) as f:
      lines = f.read().splitlines()
  except OSError:
    lines = []
  for line in lines:
    parts = line.split(":", 2)
    if len(parts) != 3:
      continue
    _, controllers, path = parts
    if not controllers:
      name = _V2_LIMIT
    elif "memory" in controllers.split(","):
      name = _V1_LIMIT
    else:
      continue
    group = path.strip("/")
    while group:
      head, limit = os.path.split(name)
      yield os.path.join(root, head, group, limit)
      group = os.path.dirname(group)
  yield os.path.join(root, _V2_LIMIT)
  yield os.path.join(root, _V1_LIMIT)


def _cgroup_bytes(proc_cgroup: str, root: str) -> int | None:
  """The lowest memory limit set on this process's cgroups, or None when none is set."""
  limits = []
  for path in _limit_files(proc_cgroup, root):
    try:
      with open(path) as f:
        text = f.read().strip()
    except OSError:
      continue
    if text.isdigit():
      limits.append(int(text))
  return min(limits) if limits else None


def host_memory_bytes() -> int | None:
  """This machine's physical memory, or its cgroup's memory limit when that is lower.

  Returns:
    Bytes, or None when neither can be read (the caller then skips its check).
  """
  known = [b for b in (_physical_bytes(), _cgroup_bytes(_PROC_CGROUP, _CGROUP_ROOT)) if b]
  return min(known) if known else None
