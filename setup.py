"""Setuptools shim: everything is declared in setup.cfg except shipping the start-up hook.

``ryu_dmm-eventlet-compat.pth`` must land at the top of site-packages (not inside the package) so
the interpreter runs it before ``ryu-manager`` imports ``ryu.app.wsgi``; see ryu_dmm_eventlet_compat.py.
A wheel gets it from ``build_lib``. An editable (PEP 660) install throws ``build_lib`` away and
keeps only what lands in the editable wheel, whose root setuptools (>= 64) makes the ``install``
command's ``install_lib`` for the duration of the build: the hook goes there instead.
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
        shutil.copy(os.path.join(here, PTH), self._pth_output())

    def _pth_output(self) -> str:
        root = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        return os.path.join(root, PTH)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [self._pth_output()]


setup(cmdclass={"build_py": BuildWithPth})
