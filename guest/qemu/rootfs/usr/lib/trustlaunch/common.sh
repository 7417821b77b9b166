# Shared by /init and channel.sh (busybox sh). Console output is seen by dom0: progress
# only, never key material.
# Each line carries the guest's uptime, so the console doubles as a boot timeline.
say() {
  read -r up _ < /proc/uptime 2>/dev/null || up=?
  echo "trustlaunch-guest: [$up] $*"
}
# PID 1 must not return: power off so that QEMU (started with -no-reboot) exits.
fatal() { say "FATAL: $*"; sync; poweroff -f; sleep 5; exit 1; }
