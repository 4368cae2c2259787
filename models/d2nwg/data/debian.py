"""Installed Debian packages as data sources: their files and versions, asked of dpkg.

Asking dpkg for a package's files keeps install paths out of the code and
guarantees that every source file belongs to the package the registry names.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


class MissingPackage(RuntimeError):
    pass


def _dpkg_query(*args: str) -> str:
    result = subprocess.run(["dpkg-query", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise MissingPackage(
            f"dpkg-query {' '.join(args)} failed: {result.stderr.strip()}; "
            "install the packages in scripts/system-packages.txt (bash scripts/setup.sh)"
        )
    return result.stdout


@functools.lru_cache(maxsize=None)
def package_version(package: str) -> str:
    status, version = _dpkg_query("-W", "-f=${Status}\t${Version}", package).split("\t")
    if status != "install ok installed":
        raise MissingPackage(f"Debian package {package} is not installed ({status})")
    return version


@functools.lru_cache(maxsize=None)
def package_files(package: str) -> tuple[Path, ...]:
    """Regular files installed by `package`, sorted."""
    package_version(package)
    paths = (Path(line) for line in _dpkg_query("-L", package).splitlines() if line.strip())
    return tuple(sorted(p for p in paths if p.is_file()))


def package_file(package: str, name: str) -> Path:
    """The one file of `package` whose name is `name`."""
    matches = [p for p in package_files(package) if p.name == name]
    if len(matches) != 1:
        raise MissingPackage(f"expected one {name} in Debian package {package}, found {len(matches)}")
    return matches[0]
