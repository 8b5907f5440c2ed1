#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: system packages (when root), the venv, Ryu,
# and this checkout installed editable. Used by `make venv` (and so by `make test` and `make lab`).
# Safe to run twice; turns an earlier non-editable install into an editable one.
# Optional: DMM_OSKEN=1 also makes a second venv, .venv-osken (VENV_OSKEN), where the CMD runs under
# os-ken's osken-manager instead of Ryu (docs/runtime.md); `make test` uses it.
# Optional: DMM_WIRESHARK_PLUGIN=1 also copies the RFC 8885 Wireshark/tshark dissector
# (tools/wireshark/rfc8885.lua) into your personal Wireshark Lua plugin folder (docs/wireshark.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
APT_PKGS="openvswitch-switch tshark iproute2 ethtool tcpdump iputils-ping procps mininet util-linux strace openssl \
    redis-server redis-sentinel \
    strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins strongswan-pki nftables"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for p in $APT_PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "setup: installing system packages:$missing"
        export DEBIAN_FRONTEND=noninteractive
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
else
    echo "setup: not root: skipping system packages ($APT_PKGS); root-only tests will be skipped"
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# Ryu 4.34 cannot build under setuptools >= 68 nor in an isolated build; editable (PEP 660) installs
# need setuptools >= 64 (docs/installation.md).
"$VENV/bin/pip" install -q --disable-pip-version-check "setuptools>=64,<68" pbr wheel
"$VENV/bin/python" -c "import ryu" 2>/dev/null || \
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation ryu==4.34
# Editable: the venv imports this checkout, so every test, and every process a test starts, runs
# what is being edited. setup.py puts the start-up hook's .pth into site-packages in this mode too.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation -e ".[test,lab]"
echo "setup: ready ($VENV)"

if [ "${DMM_OSKEN:-0}" = 1 ]; then
    # os-ken instead of Ryu: this package's dependencies (setup.cfg) with os-ken in place of ryu==4.34,
    # then this checkout editable without dependencies (so pip does not pull Ryu in). No Ryu here.
    VENV_OSKEN=${VENV_OSKEN:-.venv-osken}
    OSKEN_PKGS="os-ken==3.1.1 eventlet==0.36.1 dnspython>=2.3,<3 webob>=1.8 networkx>=3 prometheus_client>=0.17 redis>=5"
    [ -x "$VENV_OSKEN/bin/python" ] || "$PY" -m venv "$VENV_OSKEN"
    "$VENV_OSKEN/bin/pip" install -q --disable-pip-version-check "setuptools>=64,<68" wheel $OSKEN_PKGS
    "$VENV_OSKEN/bin/pip" install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
    echo "setup: ready ($VENV_OSKEN, os-ken)"
fi

if [ "${DMM_WIRESHARK_PLUGIN:-0}" = 1 ]; then
    # Wireshark loads every .lua file in this folder at start-up (tshark -G folders shows it).
    plugdir=""
    if command -v tshark >/dev/null; then
        plugdir=$(tshark -G folders 2>/dev/null | sed -n 's/^Personal Lua Plugins:[[:space:]]*//p')
    fi
    plugdir=${plugdir:-$HOME/.local/lib/wireshark/plugins}
    mkdir -p "$plugdir"
    install -m 0644 tools/wireshark/rfc8885.lua "$plugdir/rfc8885.lua"
    echo "setup: Wireshark plugin installed: $plugdir/rfc8885.lua"
fi
