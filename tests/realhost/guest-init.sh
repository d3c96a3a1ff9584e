#!/bin/busybox sh
# A Linux PV guest's /init (busybox only; tests/realhost/__init__.py builds the initramfs).
# The guest reports its own balloon driver's figures whenever they change, as one Xenstore
# node under its own home, data/realhost/balloon = "CURRENT_KB TARGET_KB SEQ" (from
# /sys/devices/system/xen_memory/xen_memory0: info/current_kb, target_kb; SEQ counts the
# reports), and on its console.  busybox has no Xenstore client: XS_WRITE goes to
# /dev/xen/xenbus in the wire format (a header of four little-endian u32: type, request id,
# transaction, payload length; then "PATH\0VALUE"), built with shell arithmetic alone, as
# forks are slow in a PV guest under emulation. Before that, once, it probes what the driver's
# sysfs files accept (see below).
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

# The driver's sysfs, probed once at boot for tests/test_real_host.py, which replays the same
# writes on tests/linux_sysfs_model.py and compares: every file as read ("r"), their modes
# ("m"), then for each write ("w") the file, the text, the shell's status, its error and every
# file after. Published as one node, data/realhost/sysfs, a line each, fields split by "|".
# The targets written stay within a few MiB of the one the driver had, and the last puts it
# back (Domain-0 then writes memory/target again, so the driver follows the host's target
# whatever the host set meanwhile).
files="target_kb target info/current_kb info/low_kb info/high_kb schedule_delay max_schedule_delay retry_count max_retry_count"
values() {  # every file's text, each after a "|", into $line
    line=
    for f in $files; do
        read -r v < $balloon/$f
        line="$line|$v"
    done
}
probe() {  # FILE TEXT: `echo TEXT > FILE`, as root does by hand
    { echo "$2" > $balloon/$1; } 2> /tmp/probe.err
    status=$?
    err=
    read -r err < /tmp/probe.err
    values
    log="$log
w|$1|$2|$status|${err##*: }$line"
}
read -r t0 < $balloon/target_kb
values
log="r$line
m|$(cd $balloon && stat -c '%n:%a' $files | tr '\n' ' ')"
probe target_kb $((t0 + 1))
probe target_kb 0x3ff00
probe target_kb 0777000
probe target_kb 261000junk
probe target 255M
probe target 268000000
probe info/current_kb 1
probe retry_count 5
probe max_retry_count junk
probe max_retry_count +7
probe max_schedule_delay 0x20
probe max_retry_count 0
probe target_kb $t0
xs_write data/realhost/sysfs "$log"
echo "realhost-guest: sysfs probed"

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
