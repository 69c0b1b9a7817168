"""Check what the built sdist and wheel hold (tools/run.sh dist and test run it after `twine check`).

    python tools/check_dist.py dist/

- one sdist and one wheel, of the version in pyproject.toml;
- the sdist holds exactly the source tree git knows (tracked files, and untracked ones git does not
  ignore) plus what setuptools generates: every test support file (conftest.py, _helpers.py,
  tests/predictors/, ...), so its tests can run, and no venv, cache or output;
- the wheel holds the package only (every file of src/confroute, py.typed included), its metadata
  names the Python versions, the extras and the `confroute` command.

Without git (an unpacked sdist), the sdist is checked against the tests' own support files only.
Prints what is wrong and exits 1, or prints one line and exits 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Files the sdist must hold whatever git says: the tests cannot run without them.
TEST_SUPPORT = ["tests/conftest.py", "tests/_helpers.py", "tests/predictors/conftest.py",
                "tests/predictors/_tiny_bert.py", "pyproject.toml", "README.md", "LICENSE"]
#: What setuptools adds to an sdist.
GENERATED = re.compile(r"^(PKG-INFO|setup\.cfg|src/confroute\.egg-info/.*)$")


def project_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match, "no version in pyproject.toml"
    return match.group(1)


def source_files() -> set[str] | None:
    """The files git knows in the working tree (tracked + untracked not ignored), or None without git."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {name for name in out.decode().split("\0") if name and (ROOT / name).is_file()}


def check_sdist(path: Path, version: str) -> list[str]:
    prefix = f"confroute-{version}/"
    with tarfile.open(path) as tar:
        names = {m.name[len(prefix):] for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)}
    shipped = {n for n in names if not GENERATED.match(n)}
    problems = [f"sdist lacks {n}" for n in TEST_SUPPORT if n not in shipped]
    expected = source_files()
    if expected is not None:
        problems += [f"sdist lacks {n} (git knows it)" for n in sorted(expected - shipped)]
        problems += [f"sdist holds {n}, which git ignores or does not know" for n in sorted(shipped - expected)]
    if "PKG-INFO" not in names:
        problems.append("sdist has no PKG-INFO")
    return problems


def check_wheel(path: Path, version: str) -> list[str]:
    problems = []
    info = f"confroute-{version}.dist-info/"
    with zipfile.ZipFile(path) as whl:
        names = set(whl.namelist())
        metadata = Parser().parsestr(whl.read(info + "METADATA").decode())
        entry_points = whl.read(info + "entry_points.txt").decode()
    package = {n for n in names if not n.startswith(info)}
    src = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "confroute").rglob("*")
           if p.is_file() and "__pycache__" not in p.parts}
    problems += [f"wheel lacks {n}" for n in sorted(src - package)]
    problems += [f"wheel holds {n}, outside the package" for n in sorted(package - src)]
    if "confroute/py.typed" not in package:
        problems.append("wheel lacks confroute/py.typed")
    if metadata["Version"] != version:
        problems.append(f"wheel metadata version {metadata['Version']} != {version}")
    if metadata["Requires-Python"] != ">=3.10":
        problems.append(f"Requires-Python is {metadata['Requires-Python']}")
    classifiers = metadata.get_all("Classifier") or []
    for minor in (10, 11, 12, 13):
        if f"Programming Language :: Python :: 3.{minor}" not in classifiers:
            problems.append(f"no classifier for Python 3.{minor}")
    extras = set(metadata.get_all("Provides-Extra") or [])
    for extra in ("pandas", "plot", "hf", "onnx", "deepsparse", "export", "quantize", "ray", "serve", "all"):
        if extra not in extras:
            problems.append(f"wheel metadata lacks the extra {extra}")
    if "confroute = confroute.cli:main" not in entry_points:
        problems.append("wheel has no `confroute` command")
    if metadata.get("Description-Content-Type") != "text/markdown":
        problems.append("README is not declared as markdown")
    return problems


def main(argv: list[str]) -> int:
    dist = Path(argv[0] if argv else ROOT / "dist")
    version = project_version()
    sdists = sorted(dist.glob("confroute-*.tar.gz"))
    wheels = sorted(dist.glob("confroute-*.whl"))
    expected_names = ([f"confroute-{version}.tar.gz"], [f"confroute-{version}-py3-none-any.whl"])
    if ([p.name for p in sdists], [p.name for p in wheels]) != expected_names:
        print(f"expected exactly {expected_names} in {dist}, found {[p.name for p in sdists + wheels]}")
        return 1
    problems = check_sdist(sdists[0], version) + check_wheel(wheels[0], version)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    with tarfile.open(sdists[0]) as tar:
        n_sdist = sum(m.isfile() for m in tar.getmembers())
    with zipfile.ZipFile(wheels[0]) as whl:
        n_wheel = len(whl.namelist())
    print(f"dist OK: {sdists[0].name} ({n_sdist} files: the source tree git knows, tests included), "
          f"{wheels[0].name} ({n_wheel} files: the package only)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
