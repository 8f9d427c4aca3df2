"""What a run records about where it came from: code version, entry point, environment.

Everything here is best-effort and never fails a run: a missing ``git`` or a
directory that is not a repository simply yields fewer tags.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

GIT_TIMEOUT_S = 5
SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO = "mlflow.source.git.repoURL"
GIT_DIRTY = "loopml.git.dirty"
USER = "mlflow.user"


@dataclass
class Provenance:
    tags: dict[str, str]
    # artifact path -> text content (the dirty diff, the package list)
    files: dict[str, str] = field(default_factory=dict)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(cwd: Path) -> tuple[dict[str, str], str | None]:
    """(tags, diff-or-None) for the repository containing ``cwd``."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return {}, None
    tags = {GIT_COMMIT: commit.strip()}
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    if branch:
        tags[GIT_BRANCH] = branch.strip()
    remote = _git(["config", "--get", "remote.origin.url"], cwd)
    if remote:
        tags[GIT_REPO] = remote.strip()
    diff = _git(["diff", "HEAD"], cwd) or ""
    untracked = _git(["ls-files", "--others", "--exclude-standard"], cwd) or ""
    dirty = bool(diff.strip() or untracked.strip())
    tags[GIT_DIRTY] = str(dirty).lower()
    if untracked.strip():
        diff += "\n# untracked files:\n" + "".join(f"#   {f}\n" for f in untracked.splitlines())
    return tags, diff if dirty else None


def installed_packages() -> list[str]:
    names = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            names[name.lower()] = f"{name}=={dist.version}"
    return sorted(names.values())


def entry_point() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>"
    return argv0 if argv0 in ("-c", "<interactive>") else str(Path(argv0).name)


def capture(cwd: Path | None = None) -> Provenance:
    """Tags and files describing the code and environment of the calling process."""
    cwd = cwd or Path.cwd()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    tags = {
        SOURCE_NAME: entry_point(),
        SOURCE_TYPE: "LOCAL",
        USER: user,
        "loopml.python_version": platform.python_version(),
        "loopml.platform": platform.platform(),
        "loopml.host": socket.gethostname(),
        "loopml.command": " ".join(sys.argv)[:1000],
    }
    git_tags, diff = git_state(cwd)
    tags.update(git_tags)
    files = {"environment/requirements.txt": "\n".join(installed_packages()) + "\n"}
    if diff:
        files["code/diff.patch"] = diff
    return Provenance(tags, files)
