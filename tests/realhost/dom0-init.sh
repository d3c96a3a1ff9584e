#!/bin/busybox sh
# Domain-0's /init (busybox; tests/realhost/__init__.py builds the initramfs around it).
# Kernel command-line words the kernel does not know reach us as variables:
#   realhost_out     the read-write share's path on the host (mounted at the same path here)
#   realhost_layers  how many host directories (shares layer0, layer1...) lie over the host's /
#                    (the first wins)
#   realhost_timeout seconds the job may run
# It mounts the host's / (read-only 9p) under an overlay with a tmpfs on top, runs the job
# from the read-write share in it, records the job's status and output there, and powers off
# whatever happens: the host's QEMU then exits.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "realhost-init: $*"; }
halt() {
    say "$*"
    sync
    poweroff -f
    sleep 60
}

while read -r module; do
    insmod "/lib/modules/$module" || halt "insmod $module failed"
done < /lib/modules/order

mkdir -p /lower /rw /newroot
# cache=loose: the host's files do not change under a boot, and Python's many stats and
# opens over 9p cost seconds per command without a cache.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
    || halt "cannot mount the host's / over 9p"
mount -t tmpfs -o size=256m,mode=0755 tmpfs /rw || halt "cannot mount a tmpfs"
mkdir -p /rw/upper /rw/work
# Each layer is a 9p share of its own (layer0, layer1, ...): overlayfs refuses lower
# layers nested in one another, as they would be inside the one share of the host's /.
lowerdir=
n=0
while [ "$n" -lt "$realhost_layers" ]; do
    mkdir -p /layers/$n
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose layer$n /layers/$n \
        || halt "cannot mount layer $n over 9p"
    lowerdir="$lowerdir/layers/$n:"
    n=$((n + 1))
done
mount -t overlay overlay -o "lowerdir=${lowerdir}/lower,upperdir=/rw/upper,workdir=/rw/work" /newroot \
    || halt "cannot mount the overlay (lowerdir=${lowerdir}/lower)"

ip link set lo up  # the exporter listens on 127.0.0.1
new=/newroot
mount -t proc proc $new/proc
mount -t sysfs sysfs $new/sys
mount -t devtmpfs devtmpfs $new/dev
mkdir -p $new/dev/pts $new/dev/shm
mount -t devpts devpts $new/dev/pts
mount -t tmpfs tmpfs $new/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $new/run
mount -t xenfs xenfs $new/proc/xen || halt "cannot mount xenfs"
out=$realhost_out
mkdir -p "$new$out"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out "$new$out" || halt "cannot mount the share $out"
[ -f "$new$out/job" ] || halt "no job in $out"

say "running $out/job (at most ${realhost_timeout}s)"
timeout -s KILL "$realhost_timeout" chroot $new /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb LANG=C.UTF-8 /bin/sh "$out/job" > "$new$out/job.log" 2>&1
status=$?
echo "$status" > "$new$out/job.status"
sync
umount "$new$out"
halt "job ended with status $status; powering off"
