"""The lock files are what a new machine installs: they must match the requirement files they were written from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from include.local_platform import locks

REPO_ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def _pins(lock: str) -> dict[tuple[str, str], str]:
    """(package, marker) -> version for every pin of a lock."""
    pins = {}
    for line in (REPO_ROOT / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            name, version, marker = match.groups()
            pins[(name.lower().replace("_", "-"), (marker or "").strip())] = version
    return pins


@pytest.mark.parametrize("requirements,lock", sorted(locks.LOCKS.items()))
def test_lock_was_written_from_the_requirement_files_as_they_are(requirements: str, lock: str) -> None:
    assert locks.recorded_digest(REPO_ROOT / lock) == locks.inputs_digest(), (
        f"{requirements} (or another requirements*.txt) changed after {lock} was written: run `make lock` and "
        "commit the lock files with it."
    )


def test_digest_changes_with_any_requirement_file(tmp_path: Path) -> None:
    for name in locks.LOCKS:
        (tmp_path / name).write_text((REPO_ROOT / name).read_text())
    before = locks.inputs_digest(tmp_path)
    for name in locks.LOCKS:
        original = (tmp_path / name).read_text()
        (tmp_path / name).write_text(original + "six==1.17.0\n")
        assert locks.inputs_digest(tmp_path) != before, name
        (tmp_path / name).write_text(original)
    assert locks.inputs_digest(tmp_path) == before


@pytest.mark.parametrize("lock", sorted(locks.LOCKS.values()))
def test_every_package_is_pinned_with_a_hash(lock: str) -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", (REPO_ROOT / lock).read_text().split("\n", 2)[2])
    assert len(entries) > 100
    for entry in entries:
        first = entry.splitlines()[0]
        assert PIN.match(first), f"{lock}: not an exact pin: {first}"
        assert "--hash=sha256:" in entry, f"{lock}: {first} has no hash"


def test_a_package_has_one_version_in_every_lock() -> None:
    dev = _pins("requirements-dev.lock")
    for lock in ("requirements.lock", "requirements-local.lock"):
        pins = _pins(lock)
        assert pins.keys() <= dev.keys(), f"{lock} has packages the dev lock lacks: {pins.keys() - dev.keys()}"
        differ = {key: (version, dev[key]) for key, version in pins.items() if dev[key] != version}
        assert not differ, f"{lock} and requirements-dev.lock pin different versions: {differ}"


def test_direct_requirements_are_locked_at_their_pinned_versions() -> None:
    for requirements, lock in locks.LOCKS.items():
        pins = {name: version for (name, _marker), version in _pins(lock).items()}
        for line in (REPO_ROOT / requirements).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
            if match:
                name = match.group(1).lower().replace("_", "-")
                assert pins.get(name) == match.group(2), f"{lock} pins {name} at {pins.get(name)}, not {match.group(2)}"
