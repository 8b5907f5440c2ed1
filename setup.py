"""Setuptools shim: everything is declared in setup.cfg except shipping the start-up hook.

``ryu_dmm-eventlet-compat.pth`` must land at the top of site-packages (not inside the package) so
the interpreter runs it before ``ryu-manager`` imports ``ryu.app.wsgi``; see ryu_dmm_eventlet_compat.py.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "ryu_dmm-eventlet-compat.pth"


class BuildWithPth(build_py):
    def run(self) -> None:
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        shutil.copy(os.path.join(here, PTH), os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildWithPth})
