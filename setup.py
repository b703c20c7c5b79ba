"""Build glue: snackwatch(1) generated from the real parser by argparse-manpage, installed to share/man/man1."""

import os
import sys

from build_manpages import build_manpages, get_build_py_cmd, get_install_cmd
from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # snackwatch.cli's parser needs the stdlib alone
setup(cmdclass={"build_manpages": build_manpages, "build_py": get_build_py_cmd(), "install": get_install_cmd()})
