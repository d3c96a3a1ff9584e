#!/bin/busybox sh
# A Linux PV guest's /init (busybox only; tests/realhost/__init__.py builds the initramfs).
# The guest reports its own balloon driver's figures whenever they change, as one Xenstore
# node under its own home, data/realhost/balloon = "CURRENT_KB TARGET_KB SEQ" (from
# /sys/devices/system/xen_memory/xen_memory0: info/current_kb, target_kb; SEQ counts the
# reports), and on its console.  busybox has no Xenstore client: XS_WRITE goes to
# /dev/xen/xenbus in the wire format (a header of four little-endian u32: type, request id,
# transaction, payload length; then "PATH\0VALUE"), built with shell arithmetic alone, as
# forks are slow in a PV guest under emulation.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

octal() {  # the octal escape of byte $1 & 255, appended to $bytes
    bytes="$bytes\\$(($1 >> 6 & 3))$(($1 >> 3 & 7))$(($1 & 7))"
}
le32() {  # $1 as four little-endian bytes, appended to $bytes
    octal $(($1 & 255)); octal $(($1 >> 8 & 255)); octal $(($1 >> 16 & 255)); octal $(($1 >> 24 & 255))
}
request=0
xs_write() {  # PATH VALUE: a path without a leading / is under this domain's home
    request=$((request + 1))
    bytes=
    le32 11; le32 $request; le32 0; le32 $((${#1} + 1 + ${#2}))
    printf "$bytes%s\\0%s" "$1" "$2" > /dev/xen/xenbus
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
        xs_write data/realhost/balloon "$current_kb $target_kb $seq"
        echo "realhost-guest: current_kb=$current_kb target_kb=$target_kb seq=$seq"
        last=$now
    fi
    sleep 0.05
done
