#!/usr/bin/env bash
# Builds the trustlaunch QEMU guest (docs/guest-image.md) from Debian packages:
#   vmlinuz      Debian's cloud kernel (linux-image-<release>-cloud-amd64, LZ4), verbatim
#   initrd.img   cpio newc (LZ4, legacy frame) of busybox-static, OpenSSH's sshd and
#                ssh-keygen with their libraries, the virtio modules, guest/qemu/rootfs
#   cmdline      the kernel command line (no trailing newline)
#   manifest.json {"cmdline","initrd","kernel"}: sha256:<hex> of each (cmdline: its bytes)
# into guest/build/qemu/ (or --out DIR). Every input is recorded in DIR/stamp; when the
# stamp matches and the outputs match the manifest, nothing is rebuilt (--force rebuilds).
# The output is reproducible on one machine: fixed mtimes, sorted cpio, no timestamps.
# Any missing piece fails the build with a message; nothing is silently left out.
#
# usage: scripts/build-guest.sh [--out DIR] [--force]
# env:   TRUSTLAUNCH_GUEST_KERNEL   kernel package (default: what linux-image-cloud-amd64 depends on)
#        TRUSTLAUNCH_GUEST_CACHE    where downloaded .debs are kept (default guest/build/cache)
#        TRUSTLAUNCH_GUEST_COMPRESSION  initramfs compression: lz4 (default), gzip or none
set -euo pipefail
shopt -s inherit_errexit

repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/guest/build/qemu"
force=0
while [ "$#" -gt 0 ]; do
  case $1 in
    --out) [ "$#" -ge 2 ] || { echo "build-guest: --out needs a directory" >&2; exit 2; }; out=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-guest: unknown argument: $1 (usage: scripts/build-guest.sh [--out DIR] [--force])" >&2; exit 2 ;;
  esac
done

die() { echo "build-guest: ERROR: $*" >&2; exit 1; }
note() { echo "build-guest: $*" >&2; }

# --- fixed choices (part of the stamp) ------------------------------------------------
readonly CMDLINE='console=ttyS0 quiet panic=-1'
readonly MODULES='virtio_pci virtio_net virtio_console virtio_rng' # + their dependencies
readonly EPOCH=946684800                                          # mtime of every initramfs entry
readonly COMPRESSION=${TRUSTLAUNCH_GUEST_COMPRESSION:-lz4}       # lz4|gzip|none; lz4 measured best (docs/guest-image.md)
readonly SSHD=/usr/sbin/sshd SSH_KEYGEN=/usr/bin/ssh-keygen BUSYBOX=/bin/busybox
case $COMPRESSION in lz4 | gzip | none) ;; *) die "unknown compression $COMPRESSION (TRUSTLAUNCH_GUEST_COMPRESSION: lz4, gzip or none)" ;; esac
rootfs="$repo/guest/qemu/rootfs"
cache=${TRUSTLAUNCH_GUEST_CACHE:-$repo/guest/build/cache}

# --- tools and host packages ---------------------------------------------------------
for tool in apt-cache apt-get dpkg-deb dpkg-query cpio lz4 sha256sum ldd flock find sort awk; do
  command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool (Debian: apt-get install cpio lz4 …)"
done
[ -x "$BUSYBOX" ] && "$BUSYBOX" --list >/dev/null 2>&1 || die "missing $BUSYBOX (apt-get install busybox-static)"
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX" || die "$BUSYBOX is not static (install busybox-static, not busybox)"
[ -x "$SSHD" ] || die "missing $SSHD (apt-get install openssh-server)"
[ -x "$SSH_KEYGEN" ] || die "missing $SSH_KEYGEN (apt-get install openssh-client)"
[ -d "$rootfs" ] && [ -f "$rootfs/init" ] || die "missing guest/qemu/rootfs/init"
pkg_version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || die "Debian package $1 is not installed"; }
busybox_version=$(pkg_version busybox-static)
sshd_version=$(pkg_version openssh-server)
keygen_version=$(pkg_version openssh-client)

mkdir -p "$out" "$cache"
out=$(cd "$out" && pwd)
# One build at a time per output directory (test files may call us concurrently).
exec 9> "$out/.lock"
flock 9

# --- inputs ----------------------------------------------------------------------------
# The cloud kernel: the package (and exact version) linux-image-cloud-amd64 depends on.
# One apt-cache call here keeps the up-to-date check quick (each call reads the lists).
if [ -n "${TRUSTLAUNCH_GUEST_KERNEL:-}" ]; then
  kernel_pkg=$TRUSTLAUNCH_GUEST_KERNEL
  kernel_version=$(apt-cache show --no-all-versions "$kernel_pkg" 2>/dev/null | awk '$1 == "Version:" { print $2; exit }') ||
    die "apt-cache knows no package $kernel_pkg"
else
  read -r kernel_pkg kernel_version < <(apt-cache show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
    awk '$1 == "Depends:" { for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9].*-cloud-amd64$/ && $(i+1) == "(=") { v = $(i+2); sub(/\)$/, "", v); print $i, v; exit } }') || true
fi
[ -n "${kernel_pkg:-}" ] && [ -n "${kernel_version:-}" ] ||
  die "cannot resolve the cloud kernel through apt-cache (linux-image-cloud-amd64 or \$TRUSTLAUNCH_GUEST_KERNEL); run apt-get update"
kernel_release=${kernel_pkg#linux-image-}

# Shared libraries of the OpenSSH binaries, as ldd resolves them on this host.
libraries() {
  ldd "$SSHD" "$SSH_KEYGEN" | awk '
    /not found/ { print "MISSING " $1; next }
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u
}
libs=$(libraries)
if grep -q '^MISSING' <<<"$libs"; then die "unresolved libraries: $(grep '^MISSING' <<<"$libs" | tr '\n' ' ')"; fi
[ -n "$libs" ] || die "ldd found no libraries for $SSHD"

hash_of() { sha256sum "$1" | cut -d' ' -f1; }
stamp=$(
  echo "format 1"
  echo "script $(hash_of "$0")"
  (cd "$rootfs" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sed 's/^/rootfs /')
  echo "kernel $kernel_pkg $kernel_version"
  echo "busybox-static $busybox_version $(hash_of "$BUSYBOX")"
  echo "openssh-server $sshd_version $(hash_of "$SSHD")"
  echo "openssh-client $keygen_version $(hash_of "$SSH_KEYGEN")"
  while IFS= read -r lib; do echo "lib $lib $(hash_of "$lib")"; done <<<"$libs"
  echo "cmdline $CMDLINE"
  echo "modules $MODULES"
  echo "compression $COMPRESSION epoch $EPOCH"
)

digest() { echo "sha256:$(hash_of "$1")"; }
manifest_of() { # kernel initrd cmdline-file -> canonical JSON (RFC 8785 key order)
  printf '{"cmdline":"%s","initrd":"%s","kernel":"%s"}\n' "$(digest "$3")" "$(digest "$2")" "$(digest "$1")"
}
up_to_date() {
  [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] || return 1
  for f in vmlinuz initrd.img cmdline manifest.json; do [ -f "$out/$f" ] || return 1; done
  [ "$(manifest_of "$out/vmlinuz" "$out/initrd.img" "$out/cmdline")" = "$(cat "$out/manifest.json")" ]
}
if [ "$force" = 0 ] && up_to_date; then
  note "up to date: $out ($kernel_pkg $kernel_version)"
  exit 0
fi

# --- build -----------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/tl-build-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work" # apt-get download runs as _apt and must reach work/download
note "building into $out ($kernel_pkg $kernel_version)"

# 1. The kernel package, fetched once into the cache and checked against the archive index.
kernel_sha256=$(apt-cache show "$kernel_pkg=$kernel_version" 2>/dev/null | awk '$1 == "SHA256:" { print $2; exit }')
[ -n "$kernel_sha256" ] || die "apt-cache show $kernel_pkg=$kernel_version gives no SHA256"
deb="$cache/${kernel_pkg}_${kernel_version//:/%3a}_amd64.deb"
if [ ! -f "$deb" ] || [ "$(hash_of "$deb")" != "$kernel_sha256" ]; then
  note "apt-get download $kernel_pkg=$kernel_version"
  mkdir -p "$work/download"
  # apt drops to the _apt user for downloads when it may write the directory.
  if id _apt >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then chown _apt "$work/download"; fi
  (cd "$work/download" && apt-get download -q "$kernel_pkg=$kernel_version") || die "apt-get download $kernel_pkg=$kernel_version failed"
  fetched=$(find "$work/download" -name '*.deb' | head -n 1)
  [ -n "$fetched" ] || die "apt-get download produced no .deb"
  [ "$(hash_of "$fetched")" = "$kernel_sha256" ] || die "$fetched does not match the SHA256 in the archive index"
  mv "$fetched" "$deb"
fi
dpkg-deb -x "$deb" "$work/kernel" || die "cannot extract $deb"
vmlinuz="$work/kernel/boot/vmlinuz-$kernel_release"
moddir="$work/kernel/lib/modules/$kernel_release"
[ -f "$vmlinuz" ] || die "$deb has no boot/vmlinuz-$kernel_release"
[ -d "$moddir" ] || die "$deb has no lib/modules/$kernel_release"
grep -qx 'CONFIG_KERNEL_LZ4=y' "$work/kernel/boot/config-$kernel_release" || note "warning: this kernel is not LZ4-compressed (slower under TCG)"
grep -qx 'CONFIG_RD_LZ4=y' "$work/kernel/boot/config-$kernel_release" || die "this kernel cannot unpack an LZ4 initramfs"

# 2. Module dependencies: depmod (kmod's, else busybox's) for modules.dep, then each
#    module's own `depends=` (from its .modinfo) orders the insmod calls, dependencies first.
if command -v depmod >/dev/null 2>&1; then
  depmod -b "$work/kernel" "$kernel_release" || die "depmod failed"
else
  "$BUSYBOX" depmod -b "$work/kernel" "$kernel_release" || die "busybox depmod failed"
fi
[ -s "$moddir/modules.dep" ] || die "depmod wrote no modules.dep"
module_path() { # name -> path relative to $moddir ('-' and '_' are the same in module names)
  awk -F: -v want="${1//-/_}" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko$/, "", n); gsub(/-/, "_", n); if (n == want) { print $1; exit } }' "$moddir/modules.dep"
}
module_depends() { # path -> direct dependencies, one per line
  local deps
  deps=$(tr '\0' '\n' < "$moddir/$1" | grep -a '^depends=' || true)
  [ "$(grep -c . <<<"$deps")" -eq 1 ] || die "cannot read depends= of $1"
  deps=${deps#depends=}
  [ -z "$deps" ] || tr ',' '\n' <<<"$deps"
}
ordered=()
declare -A visiting=() placed=()
place_module() { # depth-first: dependencies before the module
  local name=${1//-/_} path dep deps
  [ -z "${placed[$name]:-}" ] || return 0
  [ -z "${visiting[$name]:-}" ] || die "module dependency cycle at $name"
  visiting[$name]=1
  path=$(module_path "$name")
  if [ -z "$path" ]; then
    grep -q "/${name//_/[-_]}\.ko\$" "$moddir/modules.builtin" && { placed[$name]=builtin; return 0; }
    die "module $name is neither built in nor a module of $kernel_release"
  fi
  deps=$(module_depends "$path")
  for dep in $deps; do place_module "$dep"; done
  placed[$name]=1
  ordered+=("$path")
}
for m in $MODULES; do place_module "$m"; done

# 3. The initramfs tree.
root="$work/root"
mkdir -p "$root"
cp -a "$rootfs/." "$root/"
for d in bin sbin usr/bin usr/sbin dev proc sys tmp run/sshd var/empty var/log etc/ssh etc/trustlaunch root/.ssh; do
  mkdir -p "$root/$d"
done
chmod 0700 "$root/root" "$root/root/.ssh"
chmod 1777 "$root/tmp"
chmod 0755 "$root/run/sshd" "$root/var/empty" "$root/init"
install -m 0755 "$BUSYBOX" "$root/bin/busybox"
# Applet links; never `bin/busybox` itself (a link to itself makes /init fail with ELOOP).
while IFS= read -r applet; do
  [ "$applet" != bin/busybox ] || continue
  [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$BUSYBOX" --list-full)
install -m 0755 "$SSHD" "$root/usr/sbin/sshd"
install -m 0755 "$SSH_KEYGEN" "$root/usr/bin/ssh-keygen"
while IFS= read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib" || die "cannot copy $lib"
done <<<"$libs"
: > "$root/etc/trustlaunch/modules"
for rel in "${ordered[@]}"; do
  mkdir -p "$root/lib/modules/$kernel_release/$(dirname "$rel")"
  cp "$moddir/$rel" "$root/lib/modules/$kernel_release/$rel"
  echo "/lib/modules/$kernel_release/$rel" >> "$root/etc/trustlaunch/modules"
done
# The image must never carry a host key: the guest makes a fresh one at every boot.
if find "$root/etc/ssh" -name 'ssh_host_*' | grep -q .; then die "a host key ended up in the image"; fi

# 4. cpio newc, sorted, owner root, fixed mtimes, then compressed.
find "$root" -exec touch -h -d "@$EPOCH" {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
  cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) > "$work/initrd.cpio" ||
  die "cpio failed"
case $COMPRESSION in
  lz4) lz4 -l -9 -q -c "$work/initrd.cpio" > "$work/initrd.img" ;; # the kernel reads the legacy frame only
  gzip) gzip -n -9 -c "$work/initrd.cpio" > "$work/initrd.img" ;;
  none) cp "$work/initrd.cpio" "$work/initrd.img" ;;
  *) die "unknown compression $COMPRESSION" ;;
esac
cp "$vmlinuz" "$work/vmlinuz"
printf '%s' "$CMDLINE" > "$work/cmdline"
manifest_of "$work/vmlinuz" "$work/initrd.img" "$work/cmdline" > "$work/manifest.json"

# 5. Publish: outputs first, the stamp last (an interrupted build is rebuilt next time).
rm -f "$out/stamp"
for f in vmlinuz initrd.img cmdline manifest.json; do
  cp "$work/$f" "$out/.$f.new" && mv "$out/.$f.new" "$out/$f"
done
printf '%s\n' "$stamp" > "$out/stamp.new" && mv "$out/stamp.new" "$out/stamp"
note "built: vmlinuz $(stat -c %s "$out/vmlinuz") B, initrd.img $(stat -c %s "$out/initrd.img") B ($COMPRESSION; cpio $(stat -c %s "$work/initrd.cpio") B), ${#ordered[@]} modules"
note "manifest: $(cat "$out/manifest.json")"
