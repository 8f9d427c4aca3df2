"""Run artifacts over the content-addressed store (a mixin of the local service)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from loopml.errors import InvalidInput, NotFound
from loopml.store.artifacts import ArtifactRepository, FileInfo
from loopml.store.paths import join, safe_relpath
from loopml.tracking.records import Run

ARTIFACT_SCHEME = "mlflow-artifacts:/"


def artifact_prefix(artifact_uri: str) -> str:
    """The manifest prefix of an ``mlflow-artifacts:/`` URI (``1/<run>/artifacts``)."""
    if not artifact_uri.startswith(ARTIFACT_SCHEME):
        raise InvalidInput(
            f"artifact location {artifact_uri!r} is not served by loopml; "
            "create the experiment without an artifact_location",
            details={"field": "artifact_uri"},
        )
    return safe_relpath(artifact_uri[len(ARTIFACT_SCHEME) :].lstrip("/"), field="artifact_uri")


class ArtifactsMixin:
    artifacts: ArtifactRepository

    get_run: Callable[[str], Run]  # provided by RunsMixin

    def _run_prefix(self, run_id: str) -> str:
        return artifact_prefix(self.get_run(run_id).info.artifact_uri)

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str | None = None) -> None:
        local_path = Path(local_path)
        base = join(self._run_prefix(run_id), safe_relpath(artifact_path or "", allow_root=True))
        if local_path.is_dir():
            for file in sorted(p for p in local_path.rglob("*") if p.is_file()):
                rel = safe_relpath(file.relative_to(local_path).as_posix())
                self.artifacts.put_file(join(base, rel), file)
        elif local_path.is_file():
            self.artifacts.put_file(join(base, safe_relpath(local_path.name)), local_path)
        else:
            raise NotFound(f"local path {str(local_path)!r} does not exist", details={"field": "path"})

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        prefix = self._run_prefix(run_id)
        start = len(prefix) + 1
        found = self.artifacts.list(join(prefix, safe_relpath(path or "", allow_root=True)))
        return [FileInfo(f.path[start:], f.is_dir, f.file_size, f.digest) for f in found]

    def download_artifacts(self, run_id: str, path: str, dest: Path) -> Path:
        full = join(self._run_prefix(run_id), safe_relpath(path, allow_root=True))
        return self.artifacts.download(full, Path(dest))

    def put_artifact(self, run_id: str, path: str, stream: IO[bytes]) -> FileInfo:
        """Store one file's bytes at ``path`` under the run's artifact root."""
        prefix = self._run_prefix(run_id)
        info = self.artifacts.put(join(prefix, safe_relpath(path)), stream)
        return FileInfo(info.path[len(prefix) + 1 :], False, info.file_size, info.digest)

    def iter_artifact(self, run_id: str, path: str) -> Iterator[bytes]:
        """The verified bytes of one artifact file."""
        return self.artifacts.iter_bytes(join(self._run_prefix(run_id), safe_relpath(path)))
