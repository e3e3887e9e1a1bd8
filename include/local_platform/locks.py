"""The lock files: every package of each environment pinned with its hashes, written from the requirement files.

`make lock` runs this module. The dev lock (the largest set) is resolved first; the local-platform and runtime
locks are resolved with it as constraints, so a package has the same version in all three. uv keeps what a lock
already pins unless a requirement file asks otherwise (or `--upgrade-package` names it), so running it on an
unchanged tree rewrites the same files. Each lock starts with a digest of the requirement files it was written
from: tests/test_locks.py fails, without any network, when a requirement file changed and the locks did not.

The resolution is universal (every platform and Python from 3.11), so the same runtime lock serves `make up` on
Python 3.11 and the Astro image's Python.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# requirement file -> its lock, the dev set first: the others are resolved against it.
LOCKS = {
    "requirements-dev.txt": "requirements-dev.lock",
    "requirements-local.txt": "requirements-local.lock",
    "requirements.txt": "requirements.lock",
}
DIGEST_PREFIX = "# inputs sha256: "
PYTHON_VERSION = "3.11"


def inputs_digest(root: Path = REPO_ROOT) -> str:
    """One digest over every requirement file, in a fixed order: a change to any of them changes every lock."""
    digest = hashlib.sha256()
    for requirements in sorted(LOCKS):
        digest.update(requirements.encode() + b"\0" + (root / requirements).read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_digest(lock: Path) -> str | None:
    """The digest a lock was written from, or None when it has none."""
    for line in lock.read_text().splitlines()[:5]:
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return None


def _uv() -> str:
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        sys.exit(f"uv is not in {uv.parent}: run `make lock`, which installs it into .venv first.")
    return str(uv)


def write_locks(upgrade: list[str], root: Path = REPO_ROOT) -> None:
    digest = inputs_digest(root)
    dev_lock = root / LOCKS["requirements-dev.txt"]
    for requirements, lock in LOCKS.items():
        command = [_uv(), "pip", "compile", "--quiet", "--universal", "--python-version", PYTHON_VERSION]
        command += ["--generate-hashes", "--no-header", requirements, "-o", lock]
        if requirements != "requirements-dev.txt":
            command += ["--constraint", dev_lock.name]
        for package in upgrade:
            command += ["--upgrade-package", package]
        subprocess.run(command, cwd=root, check=True)
        body = (root / lock).read_text()
        header = f"# Written by `make lock` from {requirements}; do not edit by hand.\n{DIGEST_PREFIX}{digest}\n"
        (root / lock).write_text(header + body)
        print(f"{lock}: {sum(line[:1].isalnum() for line in body.splitlines())} packages")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make lock", description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade-package", action="append", default=[], help="move this package to its newest")
    write_locks(parser.parse_args(argv).upgrade_package)


if __name__ == "__main__":
    main()
