#!/bin/sh
# as-unit.sh [--keep DIR]... [--runtime-directory NAME]... -- COMMAND [ARGS]: run COMMAND in
# Domain-0 inside the sandbox that systemd/xbctl-policy.service gives the policy service, as
# far as it can be built without systemd as PID 1 (root, with util-linux's unshare, setpriv):
#   CapabilityBoundingSet= AmbientCapabilities=  no capability at all (bounding, inheritable,
#                                                and ambient sets emptied: root's uid, no caps)
#   NoNewPrivileges=yes                           setpriv --no-new-privs
#   PrivateNetwork=yes                            a network namespace of its own (only lo, down)
#   ProtectSystem=strict                          every mount read-only but /dev, /proc, /sys
#   RuntimeDirectory=NAME                         /run/NAME, root's, mode 0755, the one writable
#                                                place (RuntimeDirectoryPreserve=yes: kept after)
#   PrivateTmp=yes                                a fresh /tmp and /var/tmp, in which only the
#                                                DIRs (the venv under test) are bound back, as a
#                                                test unit's BindReadOnlyPaths= would
#   ProtectHome=yes                               /root, /home and /run/user empty and unreadable
#   UMask=0077
# What needs systemd itself is listed in the README ("A real Xen host under QEMU").
set -eu
keep=
runtime=
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
        --keep) keep="$keep $2"; shift 2 ;;
        --runtime-directory) runtime="$runtime /run/$2"; shift 2 ;;
        *) echo "as-unit.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$#" -gt 1 ] || { echo "usage: as-unit.sh [--keep DIR]... [--runtime-directory NAME]... -- COMMAND [ARGS]" >&2; exit 2; }
shift
exec unshare --mount --net --propagation private -- /bin/sh -eu -c '
keep=$1 runtime=$2; shift 2
for dir in $runtime; do
    mkdir -p "$dir"
    chmod 0755 "$dir"
    mount --bind "$dir" "$dir"  # a mount point of its own, left writable below
done
# The DIRs, kept aside before /tmp is replaced (they are bound back into the new one).
mkdir -p /run/as-unit
n=0
for dir in $keep; do
    mkdir -p /run/as-unit/$n
    mount --rbind "$dir" /run/as-unit/$n
    n=$((n + 1))
done
# ProtectSystem=strict: every mount point read-only, deepest first, but the API file systems.
for target in $(awk "{print \$5}" /proc/self/mountinfo | sort -r); do
    case "$target" in
        /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;;
    esac
    case " $runtime " in
        *" $target "*) continue ;;
    esac
    mount -o remount,bind,ro "$target"
done
# PrivateTmp=yes: new, writable /tmp and /var/tmp.
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
n=0
for dir in $keep; do
    mkdir -p "$dir"
    mount --rbind /run/as-unit/$n "$dir"
    n=$((n + 1))
done
# ProtectHome=yes.
for dir in /root /home /run/user; do
    if [ -d "$dir" ]; then mount -t tmpfs -o mode=000 tmpfs "$dir"; fi
done
umask 0077
exec setpriv --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- "$@"
' as-unit "$keep" "$runtime" "$@"
