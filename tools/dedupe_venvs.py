"""Store the files two venvs share once: hard-link the second venv's copy to the first's.

    python tools/dedupe_venvs.py .venv .venv-quantize

The two test venvs of tools/run.sh hold the same release of several large packages (torch CPU alone
is ~750 MB, with sympy, transformers, scipy's libraries, ...). For every distribution installed at
the same version in both, a file whose RECORD hash is the same in both is replaced, in the second
venv, by a hard link to the first venv's file: same bytes, disk used once. pip never writes into an
installed file (an upgrade or an uninstall unlinks it), so the venvs stay independent. A file that
differs, a distribution at another version, or a filesystem without hard links is left as it is.
Re-running is cheap (files already linked are skipped) and prints what was saved.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"{venv}: no site-packages")
    return found[0]


def records(site: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(normalised name, version) -> {relative path: hash} from every dist-info RECORD."""
    out = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        record = info / "RECORD"
        if not record.is_file():
            continue
        with record.open(newline="", encoding="utf-8") as f:
            hashes = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2 and row[1]}
        out[(name.lower().replace("-", "_"), version)] = hashes
    return out


def dedupe(first: Path, second: Path) -> tuple[int, int]:
    """Link the second venv's files to the first's where they are the same; (files, bytes) linked."""
    site_a, site_b = site_packages(first), site_packages(second)
    rec_a = records(site_a)
    n_files = n_bytes = 0
    for key, hashes_b in records(site_b).items():
        hashes_a = rec_a.get(key)
        if not hashes_a:
            continue
        for rel, digest in hashes_b.items():
            if hashes_a.get(rel) != digest or rel.startswith(".."):
                continue
            a, b = site_a / rel, site_b / rel
            try:
                st_a, st_b = a.stat(), b.stat()
            except OSError:
                continue
            if st_a.st_ino == st_b.st_ino or st_a.st_size != st_b.st_size or st_a.st_dev != st_b.st_dev:
                continue
            tmp = b.with_name(b.name + ".dedupe-tmp")
            try:
                os.link(a, tmp)
                os.replace(tmp, b)
            except OSError:  # no hard links here: leave the copy
                tmp.unlink(missing_ok=True)
                return n_files, n_bytes
            n_files += 1
            n_bytes += st_b.st_size
    return n_files, n_bytes


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    n_files, n_bytes = dedupe(Path(argv[0]), Path(argv[1]))
    if n_files:
        print(f"{argv[1]}: {n_files} files ({n_bytes / 2**20:.0f} MiB) now hard links to {argv[0]}'s copies",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
