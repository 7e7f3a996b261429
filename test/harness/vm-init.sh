#!/bin/sh
# PID 1 of the test VM (vm.ts beside it): the host's root is mounted read-only over 9p, so
# this runs the host's node and checkout. Sets up what a userland needs, runs the guest program
# named by NYDUS_VM_PROGRAM with the plan NYDUS_VM_PLAN, and powers the VM off whatever happens.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
# /tmp stays the host's (read-only): the test's plan and images are there.
mkdir -p /run/tmp && export TMPDIR=/run/tmp
node "$NYDUS_VM_PROGRAM" "$NYDUS_VM_PLAN"
echo "NYDUS-VM-EXIT $?"
sync
# No ACPI here: a reboot ends qemu (-no-reboot).
busybox reboot -f
