"""Running larval as an unprivileged user from tests that run as root.

Python and larval must be readable by that user. Where the interpreter lives under a
directory only root may enter (``/root``), `readable_prefix` runs the command in a mount
namespace of its own where that directory is a tmpfs holding only the entries needed,
bound in; the host's mounts are not touched.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

NOBODY = 65534


def readable_prefix() -> list[str]:
    """An argv prefix that runs the rest in a mount namespace where each directory only
    root may enter, above the interpreter and larval, is a tmpfs (mode 0755) holding just
    the entries needed, bound in; [] when nobody can read them as they are."""
    import larval

    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix,
                                            os.path.dirname(larval.__file__))}  # fmt: skip
    covers: dict[str, set[str]] = {}
    for path in needed:
        parts = Path(path).parts
        for i in range(1, len(parts) - 1):
            ancestor = str(Path(*parts[: i + 1]))
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                covers.setdefault(ancestor, set()).add(parts[i + 1])
                break
    if not covers:
        return []
    lines = ["set -e"]
    for n, (ancestor, children) in enumerate(sorted(covers.items())):
        view = f"/tmp/larval-view-{os.getpid()}-{n}"
        lines += [f"mkdir -p {view}", f"mount -t tmpfs -o mode=755 tmpfs {view}"]
        for child in sorted(children):
            lines += [f"mkdir {view}/{child}", f"mount --bind {ancestor}/{child} {view}/{child}"]
        # The view stays at `ancestor`; its staging directory goes from the host's /tmp.
        lines += [f"mount --rbind {view} {ancestor}", f"umount -l {view}", f"rmdir {view}"]
    lines.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines), "sh"]


def as_nobody(argv: list[str]) -> list[str]:
    """`argv` run as nobody:nogroup with no supplementary groups (setpriv)."""
    return [*readable_prefix(), "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
            "--clear-groups", *argv]  # fmt: skip
