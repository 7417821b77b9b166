# The guest side of the VM channel (docs/vm-channel.md), run by /init as PID 1 with
# busybox sh. Every line from the hypervisor is parsed by json-line.awk; anything
# malformed or invalid is dropped (and reported as a `log` message), changing nothing.
#   guest -> host: host-key, ready, certificate-installed, log
#   host -> guest: config, host-certificate (unknown types are ignored)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
. /usr/lib/trustlaunch/common.sh
. /usr/lib/trustlaunch/certificate.sh

PORT_NAME=org.trustlaunch.channel.0
LIB=/usr/lib/trustlaunch
HOST_KEY=/etc/ssh/ssh_host_ed25519_key
HOST_CERT=/etc/ssh/ssh_host_ed25519_key-cert.pub
SSHD_CONFIG=/etc/ssh/sshd_config
MAX_LINE=16384
SSHD_UP=/run/trustlaunch/sshd-up                # exists once sshd listens and `ready` was sent
CERT_ANNOUNCED=/run/trustlaunch/cert-announced  # mkdir: whoever makes it reports the first certificate

configured=0 # a valid config was applied (only the first one counts)
ssh_port=
cert_installed=0
own_fp=      # SHA256 fingerprint of this boot's host key (computed on first use)
dropped=0

# --- the port -----------------------------------------------------------------------
# There is no udev: find the port by its name in sysfs and make the stable link ourselves.
find_port() {
  for _ in $(seq 1 200); do
    for d in /sys/class/virtio-ports/*; do
      [ -r "$d/name" ] || continue
      if [ "$(cat "$d/name")" = "$PORT_NAME" ] && [ -c "/dev/${d##*/}" ]; then
        ln -sf "/dev/${d##*/}" "/dev/virtio-ports/$PORT_NAME"
        return 0
      fi
    done
    sleep 0.05
  done
  return 1
}

# Messages are built only from constants and values validated below (no '"' or '\').
send() { printf '%s\n' "$1" >&3; }
send_log() { send "{\"v\":1,\"type\":\"log\",\"message\":\"$1\"}"; }
drop() {
  dropped=$((dropped + 1))
  say "dropped a channel line: $1"
  send_log "dropped: $1 (total $dropped)"
}

# --- validation -----------------------------------------------------------------------
valid_hostname() {
  [ "${#1}" -ge 1 ] && [ "${#1}" -le 253 ] &&
    printf '%s\n' "$1" | grep -Eqx '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*'
}
valid_port() {
  case $1 in '' | *[!0-9]*) return 1 ;; esac
  [ "${#1}" -le 5 ] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}
# `type base64 [comment]`, no options (they would need quotes, which never occur).
valid_authorized_key() {
  printf '%s\n' "$1" | grep -Eqx '(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [^[:cntrl:]]*)?'
}
valid_certificate_line() {
  printf '%s\n' "$1" | grep -Eqx 'ssh-ed25519-cert-v01@openssh\.com [A-Za-z0-9+/]+={0,3}( [^[:cntrl:]]*)?'
}
# SHA256 fingerprint of this boot's host key (computed once, on first use).
own_fingerprint() {
  [ -n "$own_fp" ] || own_fp=$(key_fingerprint "$HOST_KEY.pub")
  printf '%s\n' "$own_fp"
}

# --- sshd -----------------------------------------------------------------------------
write_sshd_config() {
  {
    echo "Port $ssh_port"
    echo "AddressFamily inet"
    echo "ListenAddress 0.0.0.0"
    echo "HostKey $HOST_KEY"
    # Named from the start, present or not: OpenSSH 9.2's sshd re-executes for every
    # connection and loads the certificate then, skipping it while the file is missing
    # ("Could not load host certificate" in its log). So installing the certificate is a
    # rename, never a restart (docs/guest-image.md).
    echo "HostCertificate $HOST_CERT"
    echo "PidFile /run/sshd.pid"
    echo "UsePAM no"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "PermitRootLogin prohibit-password"
    echo "AuthorizedKeysFile .ssh/authorized_keys"
    echo "UseDNS no"
    echo "PrintMotd no"
    echo "PrintLastLog no"
  } > "$SSHD_CONFIG.new" && mv "$SSHD_CONFIG.new" "$SSHD_CONFIG"
}

# Whether a socket listens on $ssh_port (from /proc/net/tcp).
listening() {
  awk -v port="$(printf ':%04X' "$ssh_port")" \
    'NR > 1 && substr($2, length($2) - 4) == port && $4 == "0A" { found = 1; exit } END { exit !found }' /proc/net/tcp
}
# Waits (at most ~30 s, TCG is slow) until sshd listens.
wait_listener() {
  for _ in $(seq 1 600); do
    listening && return 0
    sleep 0.05
  done
  return 1
}

# `certificate-installed` for the first certificate, exactly once: from the main loop when
# it is renamed into place after sshd came up, else from the announcer below once sshd is
# up (mkdir is the atomic test-and-set between the two).
announce_first_certificate() {
  mkdir "$CERT_ANNOUNCED" 2>/dev/null && send '{"v":1,"type":"certificate-installed"}'
  return 0
}

# Starts sshd and, in the background, reports `ready` once it listens — so the main loop
# goes on reading the channel and checks a certificate while sshd is starting (under TCG
# each takes a few hundred ms). The announcer sends `ready`, then marks sshd up, then looks
# for the certificate; the main loop renames the certificate, then looks for the mark. So
# a certificate renamed into place at any moment is reported by one of the two (or both
# try, and mkdir lets one), and always after `ready`.
start_sshd() {
  write_sshd_config
  # The channel (fd 3) stays with PID 1 and the announcer: sshd and its sessions never inherit it.
  /usr/sbin/sshd -D -f "$SSHD_CONFIG" -E /var/log/sshd.log 3>&- &
  (
    if ! wait_listener; then
      say "sshd did not start (see /var/log/sshd.log)"
      send_log "sshd did not start"
      exit 1
    fi
    say "sshd listening on port $ssh_port"
    send "{\"v\":1,\"type\":\"ready\",\"sshPort\":$ssh_port}"
    : > "$SSHD_UP"
    say "ready"
    [ -e "$HOST_CERT" ] && announce_first_certificate
  ) &
}

# --- messages -------------------------------------------------------------------------
on_config() {
  if [ "$configured" = 1 ]; then
    drop "config already applied"
    return
  fi
  valid_hostname "$hostname" || { drop "config: invalid hostname"; return; }
  valid_port "$sshPort" || { drop "config: invalid sshPort"; return; }
  [ -n "$nkeys" ] || { drop "config: authorizedKeys missing"; return; }
  [ "$keys_bad" = 0 ] || { drop "config: invalid authorized key"; return; }
  keys_file=/root/.ssh/authorized_keys.new
  : > "$keys_file"
  while IFS= read -r k; do
    [ -n "$k" ] || continue
    valid_authorized_key "$k" || { rm -f "$keys_file"; drop "config: invalid authorized key"; return; }
    printf '%s\n' "$k" >> "$keys_file"
  done <<KEYS
$keys
KEYS
  mv "$keys_file" /root/.ssh/authorized_keys
  hostname "$hostname"
  printf '%s\n' "$hostname" > /etc/hostname
  ssh_port=$sshPort
  configured=1
  say "configured as $hostname"
  # `ready` (and a certificate that arrived before the config) follow from the announcer.
  start_sshd
}

on_certificate() {
  valid_certificate_line "$certificate" || { drop "host-certificate: not an ssh-ed25519 certificate line"; return; }
  incoming=/etc/ssh/incoming-cert.pub
  printf '%s\n' "$certificate" > "$incoming"
  # It must parse as a host certificate (its signature checked) that certifies our key.
  certified=$(certified_key "$incoming")
  if [ -z "$certified" ]; then
    rm -f "$incoming"; drop "host-certificate: not a valid host certificate"; return
  fi
  if [ "$certified" != "$(own_fingerprint)" ]; then
    rm -f "$incoming"; drop "host-certificate: certifies another key"; return
  fi
  # rename(2) within one filesystem is atomic: each new connection's sshd loads either the
  # previous file or this whole one. No signal, so no connection is ever reset.
  mv "$incoming" "$HOST_CERT"
  say "host certificate installed"
  # From now on every new connection is served with it. Before sshd is up, the announcer
  # reports it after `ready`; a later certificate (a replacement) is reported at once.
  if [ -e "$SSHD_UP" ]; then
    if [ "$cert_installed" = 1 ]; then
      send '{"v":1,"type":"certificate-installed"}'
    else
      announce_first_certificate
    fi
  fi
  cert_installed=1
  return 0
}

handle_line() {
  [ "${#1}" -le "$MAX_LINE" ] || { drop "line too long"; return; }
  fields=$(printf '%s\n' "$1" | awk -f "$LIB/json-line.awk") || { drop "malformed line"; return; }
  # Only members of the expected JSON type are taken; one of another type counts as absent.
  v= type= hostname= sshPort= certificate= nkeys= keys= keys_bad=0
  while IFS= read -r f; do
    case $f in
      'v=n:'*) v=${f#v=n:} ;;
      'type=s:'*) type=${f#type=s:} ;;
      'hostname=s:'*) hostname=${f#hostname=s:} ;;
      'sshPort=n:'*) sshPort=${f#sshPort=n:} ;;
      'certificate=s:'*) certificate=${f#certificate=s:} ;;
      'authorizedKeys#='*) nkeys=${f#authorizedKeys#=} ;;
      'authorizedKeys[]=s:'*) keys="$keys${f#authorizedKeys[]=s:}
" ;;
      'authorizedKeys[]='*) keys_bad=1 ;;
    esac
  done <<FIELDS
$fields
FIELDS
  [ "$v" = 1 ] || { drop "unsupported or missing v"; return; }
  case $type in
    config) on_config ;;
    host-certificate) on_certificate ;;
    *) ;; # unknown types are ignored (forward compatibility)
  esac
}

# --- main -----------------------------------------------------------------------------
mkdir -p /run/trustlaunch
find_port || fatal "VM channel port $PORT_NAME not found"
[ -c "/dev/virtio-ports/$PORT_NAME" ] || fatal "VM channel port $PORT_NAME is not a device"
exec 3<> "/dev/virtio-ports/$PORT_NAME"
say "VM channel open; waiting for the hypervisor"

host_key=$(awk 'NR == 1 { print $1 " " $2 }' "$HOST_KEY.pub")
printf '%s\n' "$host_key" | grep -Eqx 'ssh-ed25519 [A-Za-z0-9+/]+={0,3}' || fatal "unexpected host key format"
send "{\"v\":1,\"type\":\"host-key\",\"key\":\"$host_key\"}" # blocks until the host connects
unset host_key
say "host key sent"

# The VM's life: serve the channel. A read returns at once at end of file while the host
# side is disconnected, hence the pause; the hypervisor bounds how long it waits for us.
while :; do
  if IFS= read -r line <&3; then
    handle_line "$line"
  else
    sleep 0.2
  fi
done
