#!/bin/busybox sh
# A Linux PV guest's /init (busybox only; tests/realhost/__init__.py builds the initramfs).
# The guest reports its own balloon driver's figures, whenever they change, under its own
# data/realhost/ in Xenstore (current_kb, target_kb; then seq, which counts the reports) and
# on its console.  busybox has no Xenstore client: XS_WRITE is written to /dev/xen/xenbus in
# the wire format (a header of four little-endian u32: type, request id, transaction, length).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

le32() {
    n=$1
    printf "\\$(printf %o $((n & 255)))\\$(printf %o $((n >> 8 & 255)))\\$(printf %o $((n >> 16 & 255)))\\$(printf %o $((n >> 24 & 255)))"
}
request=0
xs_write() {  # PATH VALUE: a path without a leading / is under this domain's home
    request=$((request + 1))
    { le32 11; le32 $request; le32 0; le32 $((${#1} + 1 + ${#2})); printf '%s\0%s' "$1" "$2"; } > /dev/xen/xenbus
}

balloon=/sys/devices/system/xen_memory/xen_memory0
seq=0
last=
while :; do
    read -r current_kb < $balloon/info/current_kb
    read -r target_kb < $balloon/target_kb
    now="$current_kb $target_kb"
    if [ "$now" != "$last" ]; then
        seq=$((seq + 1))
        xs_write data/realhost/current_kb "$current_kb"
        xs_write data/realhost/target_kb "$target_kb"
        xs_write data/realhost/seq "$seq"
        echo "realhost-guest: current_kb=$current_kb target_kb=$target_kb seq=$seq"
        last=$now
    fi
    sleep 0.05
done
