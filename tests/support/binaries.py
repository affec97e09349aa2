import shutil
import sys
from pathlib import Path


def find_binary(name: str, package: str) -> str:
    """A program from PATH or from this virtualenv's bin folder; fail naming its package."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed (it comes with {package})"
    return found
