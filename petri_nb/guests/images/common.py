"""What every disk image builder shares: the per-user cache, its lock, Debian packages, FAT tools.

Images are built without root: packages come from ``apt-get download`` + ``dpkg-deb -x``
(the Linux guest's helpers), file systems from ``mkfs.fat`` and mtools writing into
plain files. Each image is built once per user and reused while it is newer than the
code that builds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ...errors import LaunchError
from ..linux import _download

HERE = Path(__file__).parent
MIB = 1 << 20


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/petri_nb/images`` (``~/.cache`` when unset)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "petri_nb" / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(cache: Path, name: str = "") -> Iterator[None]:
    """Serialise builders across processes; one lock file per artifact, so builders can nest."""
    with open(cache / f".lock{'-' + name if name else ''}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def is_fresh(out: Path, inputs: Iterable[Path]) -> bool:
    """Whether ``out`` exists and is newer than every input (our sources, the kernel)."""
    if not out.exists():
        return False
    built = out.stat().st_mtime
    return all(built >= p.stat().st_mtime for p in inputs)


def sources() -> list[Path]:
    """This package's modules: a change to a builder rebuilds its image."""
    return sorted(HERE.glob("*.py"))


def build_atomically(out: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp)`` then rename over ``out``, so a crash never leaves half an image."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    try:
        build(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def unpacked_package(package: str, cache: Path) -> Path:
    """The root of ``package`` unpacked in the cache (``apt-get download`` + ``dpkg-deb -x``)."""
    root = cache / "debs" / package
    if (root / ".done").exists():
        return root
    deb = _download(package, cache / "debs" / "download")
    tmp = Path(tempfile.mkdtemp(dir=cache / "debs"))
    try:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (root / ".done").touch()
    deb.unlink()
    return root


def package_file(package: str, path: str, cache: Path) -> Path:
    """``path`` from the installed ``package`` if it is there, else from its unpacked .deb."""
    if Path(path).is_file():
        return Path(path)
    found = unpacked_package(package, cache) / path.lstrip("/")
    if not found.is_file():
        raise LaunchError(f"the Debian package {package} has no {path}")
    return found


def tool(name: str, package: str) -> str:
    """A host tool, also from /usr/sbin (not on a normal user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise LaunchError(f"building test disk images needs {name}; run: sudo apt-get install {package}")
    return found


def run(argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> None:
    """Run a build tool; its stderr goes into the error."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, input=stdin)
    if proc.returncode != 0:
        raise LaunchError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def mtools_env() -> dict[str, str]:
    # Our images have no real drive geometry; mtools would refuse them without this.
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def make_fat(path: Path, size_mib: int, label: str, fat32: bool = True) -> None:
    """A fresh FAT file system filling the file ``path`` (FAT32 unless asked otherwise)."""
    with open(path, "wb") as f:
        f.truncate(size_mib * MIB)
    run([tool("mkfs.fat", "dosfstools"), "-F", "32" if fat32 else "16", "-n", label, str(path)])


def fat_put(image: Path, files: dict[str, Path | bytes]) -> None:
    """Copy files into a FAT image with mtools (``EFI/BOOT/BOOTX64.EFI`` style paths)."""
    env = mtools_env()
    mmd, mcopy = tool("mmd", "mtools"), tool("mcopy", "mtools")
    made: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:
        for i, (dest, content) in enumerate(sorted(files.items())):
            parts = dest.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth])
                if folder not in made:
                    run([mmd, "-i", str(image), f"::/{folder}"], env)
                    made.add(folder)
            if isinstance(content, bytes):
                src = Path(scratch) / str(i)
                src.write_bytes(content)
                content = src
            run([mcopy, "-i", str(image), str(content), f"::/{dest}"], env)
