"""Every data file in the package is shipped: setuptools installs only the files `package-data` names."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "modbusd"


def test_package_data_ships_every_data_file_of_the_package() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"
    ]
    data = [
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert any(p.name == "example.toml" for p in data)  # `modbusd init`'s device file, at least
    for path in data:
        package = ".".join(path.parent.relative_to(PACKAGE.parent).parts)
        patterns = declared.get(package, [])
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns), f"{path} is not in package-data"
