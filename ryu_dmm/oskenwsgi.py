"""The part of Ryu's WSGI layer (``ryu.app.wsgi``) the CMD's REST API uses, for os-ken, which
dropped that module in its 2.0 release.

The names and the behaviour the CMD relies on are Ryu's: ``ControllerBase``, ``route``, the
``WSGIApplication`` context that controllers register with, ``start_service`` (which
``rest.install_server`` wraps to serve with its limits) and the ``[DEFAULT] wsapi_host`` /
``wsapi_port`` options with Ryu's defaults. ``osken-manager`` starts no web server itself, so the
context is an os-ken app: the manager starts it once every app is instantiated, which is when
``ryu-manager`` starts Ryu's server. No websockets (the CMD has none). The options are on the
command line only with ``--user-flags`` (``ryu_dmm.oskenflags``).
"""
from __future__ import annotations

import inspect
import socket
from typing import Callable, Optional

import eventlet.wsgi
import routes
import webob.dec
import webob.exc
from os_ken import cfg
from os_ken.base.app_manager import AppManager, OSKenApp
from os_ken.lib import hub

from . import oskenflags  # noqa: F401 - defines [DEFAULT] wsapi_host, wsapi_port

CONF = cfg.CONF


def route(name: str, path: str, methods: Optional[list] = None, requirements: Optional[dict] = None) -> Callable:
    """Mark a controller method as the handler of ``path`` (Routes syntax)."""
    def mark(method):
        method.routing_info = {"name": name, "path": path, "methods": methods, "requirements": requirements}
        return method
    return mark


class ControllerBase:
    """One request's controller: built per request with the data its class was registered with."""

    def __init__(self, req, link, data, **config):
        self.req, self.link, self.data = req, link, data
        for name, value in config.items():
            setattr(self, name, value)

    def __call__(self, req):
        kwargs = {k: v for k, v in req.urlvars.items() if k not in ("action", "controller")}
        return getattr(self, req.urlvars.get("action", "index"))(req, **kwargs)


class WSGIApplication(OSKenApp):
    """The web context: routes requests to registered controllers; serves once the manager starts it."""

    def __init__(self, *args, **config):
        super().__init__(*args)
        self.config = config
        self.mapper = routes.Mapper()
        self.registry: dict = {}
        self._server = None

    def register(self, controller: type, data=None) -> None:
        for action, method in inspect.getmembers(controller, lambda m: hasattr(m, "routing_info")):
            info = method.routing_info
            self.mapper.connect(info["name"], info["path"], controller=controller, action=action,
                                requirements=info["requirements"] or {},
                                conditions={"method": info["methods"]} if info["methods"] else {})
        if data:
            self.registry[controller.__name__] = data

    @webob.dec.wsgify
    def __call__(self, req):
        match = self.mapper.match(environ=req.environ)
        if not match:
            return webob.exc.HTTPNotFound()
        req.urlvars = match
        controller = match["controller"]
        return controller(req, routes.URLGenerator(self.mapper, req.environ), self.registry.get(controller.__name__),
                          **self.config)(req)

    def start(self):
        """Bind and serve; the manager joins the serving thread, and kills it in ``stop``."""
        super().start()
        self._server = start_service(AppManager.get_instance())  # looked up now: rest.install_server wraps it
        return None if self._server is None else hub.spawn(self._server.serve_forever)

    def stop(self):
        super().stop()
        if self._server is not None:
            self._server.server.close()


class WSGIServer:
    """A bound listening socket (``server``) and the WSGI app it serves (``handle``)."""

    def __init__(self, app: WSGIApplication) -> None:
        host = CONF.wsapi_host
        self.server = hub.listen((host, CONF.wsapi_port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.handle = app

    def serve_forever(self) -> None:
        eventlet.wsgi.server(self.server, self.handle)


def start_service(app_mgr: AppManager) -> Optional[WSGIServer]:
    """The server for the manager's web context, bound; None if no app asked for one."""
    for context in app_mgr.contexts.values():
        if isinstance(context, WSGIApplication):
            return WSGIServer(context)
    return None
