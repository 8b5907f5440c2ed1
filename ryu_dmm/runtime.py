"""The controller framework the CMD's shell runs on: Ryu 4.34 or os-ken 3.x (docs/runtime.md).

The shell modules import their framework names from here, so one ``ryu_dmm.cmd`` runs under
``ryu-manager`` (primary) and ``osken-manager``. The two frameworks are the same code under two
package names except for what this module papers over: the app base class (``RyuApp`` /
``OSKenApp``) and the WSGI layer, which os-ken dropped (``ryu_dmm.oskenwsgi`` stands in for it).

Both managers import their framework before they load an app, so the framework already imported
is the one to use; in a process that has imported neither (a test, a tool), Ryu if it is
installed, else os-ken. ``FRAMEWORK`` says which was chosen.
"""
from __future__ import annotations

import importlib.util
import sys


def choose(modules=sys.modules, installed=lambda name: importlib.util.find_spec(name) is not None) -> str:
    """``"ryu"`` or ``"os_ken"``: the one a manager already imported, else Ryu if installed."""
    if "ryu" in modules:
        return "ryu"
    if "os_ken" in modules or not installed("ryu"):
        return "os_ken"
    return "ryu"


FRAMEWORK = choose()

if FRAMEWORK == "ryu":
    from ryu import cfg
    from ryu.app import wsgi
    from ryu.base.app_manager import RyuApp as App
    from ryu.controller import ofp_event
    from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from ryu.lib import hub
    from ryu.lib.packet import ethernet, icmpv6, packet
    from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser
else:
    from os_ken import cfg
    from os_ken.base.app_manager import OSKenApp as App
    from os_ken.controller import ofp_event
    from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from os_ken.lib import hub
    from os_ken.lib.packet import ethernet, icmpv6, packet
    from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    if hub.HUB_TYPE != "eventlet":  # os-ken 4.x defaults to native threads; the shell is written for greenthreads
        raise ImportError(f"ryu_dmm needs os-ken's eventlet hub (OSKEN_HUB_TYPE=eventlet), not {hub.HUB_TYPE!r}")
    from . import oskenwsgi as wsgi

__all__ = ["FRAMEWORK", "App", "DEAD_DISPATCHER", "MAIN_DISPATCHER", "cfg", "ethernet", "hub",
           "icmpv6", "ofp_event", "ofproto_v1_3", "ofproto_v1_3_parser", "packet", "set_ev_cls", "wsgi"]
