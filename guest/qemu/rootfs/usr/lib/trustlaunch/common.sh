# Shared by /init and channel.sh (busybox sh). Console output is seen by dom0: progress
# only, never key material.
say() { echo "trustlaunch-guest: $*"; }
# PID 1 must not return: power off so that QEMU (started with -no-reboot) exits.
fatal() { say "FATAL: $*"; sync; poweroff -f; sleep 5; exit 1; }
