#!/bin/sh
# Prepare a Debian machine for hepsdesk: Debian packages (as root), the project's virtualenv
# in .venv with hepsdesk installed in it. Idempotent; sourced by test.sh and demo.sh.
set -eu
cd "$(dirname "$0")/.."

# The dev cloud (MariaDB, RabbitMQ), the desktop in the VMs (Xtigervnc, which can resize,
# or Xvfb; XFCE's window manager and panel on a D-Bus of their own, its file manager and
# editor, CJK fonts, openbox where XFCE is not wanted, a terminal, PulseAudio for its sound, xclip for the
# clipboard), the browser for the end-to-end tests (Debian's
# Chromium), noVNC and websockify for the desktop benchmark's baseline, Node.js for the OIDC
# provider and JupyterHub's proxy, the development directory servers (Samba AD DC: samba
# with the recommends it needs to provision a domain; OpenLDAP's slapd; the ldap/ldb tools;
# openssl for their test CA), coturn for the desktop's TURN relay test.
APT_PACKAGES="python3 python3-venv python3-dev gcc tar util-linux mariadb-server mariadb-client rabbitmq-server
erlang-base tigervnc-standalone-server xvfb xterm openbox x11-xserver-utils xclip fonts-dejavu-core chromium
xfwm4 xfce4-panel thunar mousepad dbus-x11 fonts-noto-cjk pulseaudio pulseaudio-utils x11-xkb-utils
novnc websockify samba samba-ad-provision samba-dsdb-modules samba-vfs-modules slapd ldap-utils ldb-tools openssl
coturn"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
# pyenv/other Pythons bring their own venv module; Debian's python3 needs python3-venv.
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if command -v python3 >/dev/null 2>&1 && python3 -c "import ensurepip, venv" 2>/dev/null; then
    missing=$(echo "$missing" | sed 's/ python3-venv//; s/ python3-dev//; s/ python3\b//')
fi
if [ -n "$(echo "$missing" | tr -d ' ')" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "hepsdesk setup: missing Debian packages:$missing" >&2
        echo "install them as root with: apt-get install -y --no-install-recommends$missing" >&2
        exit 1
    fi
    echo "hepsdesk setup: installing Debian packages:$missing" >&2
    # Keep maintainer scripts from starting system MariaDB/RabbitMQ/slapd/samba on our ports.
    policy_written=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_written=1
    fi
    # No debconf questions (slapd asks for a domain and password) and no dpkg conffile prompts.
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
    apt-get -q update >/dev/null
    apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        install -y -q --no-install-recommends $missing >/dev/null </dev/null
    [ "$policy_written" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
    echo "hepsdesk setup: creating .venv" >&2
    python3 -m venv .venv
fi
if [ ! -f .venv/.hepsdesk-installed ] || [ pyproject.toml -nt .venv/.hepsdesk-installed ]; then
    echo "hepsdesk setup: installing hepsdesk and its test tools into .venv" >&2
    # pip's log goes to a file (this machine's pip config adds warnings to every line of
    # output); it is shown only if the install fails.
    if ! { .venv/bin/pip install -q --disable-pip-version-check --upgrade pip &&
           .venv/bin/pip install -q --disable-pip-version-check -e '.[hub,desktop,devcloud,test]'; } > .venv/pip.log 2>&1; then
        grep -v "^WARNING: Location" .venv/pip.log >&2
        echo "hepsdesk setup: pip install failed (log: .venv/pip.log)" >&2
        exit 1
    fi
    touch .venv/.hepsdesk-installed
fi
