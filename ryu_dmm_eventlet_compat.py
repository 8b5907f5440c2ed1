"""Make Ryu 4.34 start on eventlets that run on Python >= 3.10.

``ryu/app/wsgi.py`` does ``from eventlet.wsgi import ALREADY_HANDLED``; eventlet dropped that name
in 0.34 (it now tracks the same state in ``WSGI_LOCAL.already_handled``), and ``ryu-manager``
imports ``ryu.app.wsgi`` before it loads any app, so an app cannot patch it in time (upstream
reports: faucetsdn/ryu issues 138, 169, 185). We install a tiny import hook at interpreter start
(from ``ryu_dmm-eventlet-compat.pth`` in site-packages; this module is top-level, not in
the ``ryu_dmm`` package, so that the hook does not import the package at every interpreter start): when, and only when, ``eventlet.wsgi`` is
imported, it adds a module-level ``ALREADY_HANDLED`` sentinel if eventlet lacks one. Nothing is
imported eagerly, so other programs pay one dictionary look-up per import.

The sentinel is an empty iterable: Ryu returns it only from websocket handlers, after eventlet's
own websocket code has marked the request handled, and eventlet then ignores the body.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Optional, Sequence

TARGET = "eventlet.wsgi"


class _AlreadyHandled(tuple):
    """Empty-tuple sentinel standing in for eventlet's removed ``ALREADY_HANDLED``."""

    def __repr__(self) -> str:
        return "ALREADY_HANDLED"


ALREADY_HANDLED = _AlreadyHandled()


def patch(module: ModuleType) -> None:
    if not hasattr(module, "ALREADY_HANDLED"):
        module.ALREADY_HANDLED = ALREADY_HANDLED


class _Loader(importlib.abc.Loader):
    def __init__(self, wrapped: importlib.abc.Loader) -> None:
        self._wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Idempotent: patch an already imported eventlet.wsgi, else hook its import."""
    module = sys.modules.get(TARGET)
    if module is not None:
        patch(module)
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
