"""Ryu's ``[DEFAULT] wsapi_host`` / ``wsapi_port`` options (same names and defaults) under os-ken.

``ryu-manager`` imports ``ryu.app.wsgi``, which defines them, before it parses its command line, so
``--wsapi-port`` works there. ``osken-manager`` parses its command line before it loads any app:
options an app defines are read from the configuration file only. ``osken-manager --user-flags
<this file>`` loads this file first, which makes them command-line options as well
(docs/runtime.md). Loaded both ways, the options are registered twice as equal objects: no error.
"""
from os_ken import cfg
from oslo_config.cfg import ArgsAlreadyParsedError

OPTS = [
    # Ryu's default; the CMD replaces it with 127.0.0.1 before binding (httpaccess.DEFAULT_HOST)
    cfg.StrOpt("wsapi-host", default="0.0.0.0", help="REST: address to listen on"),
    cfg.IntOpt("wsapi-port", default=8080, help="REST: TCP port to listen on"),
]

try:
    cfg.CONF.register_cli_opts(OPTS)
except ArgsAlreadyParsedError:  # loaded with the app: the command line was parsed already
    cfg.CONF.register_opts(OPTS)
