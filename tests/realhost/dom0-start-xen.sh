#!/bin/sh
# Domain-0's Xen services, as Debian's init scripts start them (xen-utils-common's
# /etc/init.d/xen): xenstored, then xen-init-dom0 (Domain-0's Xenstore nodes and its
# libxl user data), then xenconsoled (here logging every guest's console to
# /var/log/xen/console/guest-NAME.log).  The job runs it first; it exits non-zero if any
# of them does not start.
set -eu
XEN=/usr/lib/xen-4.17/bin
mkdir -p /var/run/xen /var/run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen/console /etc/xen
# xl reads /etc/xen/xl.conf (xen-utils-common's, not unpacked here): its defaults will do.
[ -e /etc/xen/xl.conf ] || : > /etc/xen/xl.conf
"$XEN/xenstored" --pid-file /var/run/xenstored.pid
i=0
until [ -S /var/run/xenstored/socket ]; do
    i=$((i + 1))
    [ "$i" -lt 300 ] || { echo "dom0-start-xen: xenstored made no socket" >&2; exit 1; }
    sleep 0.1
done
"$XEN/xen-init-dom0"
"$XEN/xenconsoled" --pid-file=/var/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
