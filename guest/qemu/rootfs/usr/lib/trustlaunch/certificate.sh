# Host certificate checks of the QEMU guest (busybox sh), sourced by channel.sh; the
# tests source it on the host with the image's busybox and the same ssh-keygen
# (test/guest/certificate-sh.test.ts). Prints nothing to the console.

# The SHA256 fingerprint (`SHA256:…`) of the key an Ed25519 host certificate FILE
# certifies; nothing when FILE is not one. One ssh-keygen run (each costs ~0.1 s under
# TCG): -L loads the certificate, which checks the CA's signature over it (a forged one
# prints nothing), then lists it. Only fixed lines count — 1 is the file name, 2 the type,
# 3 the certified key — so text in later fields (key ID, principals) cannot pose as them.
certified_key() {
  ssh-keygen -L -f "$1" 2>/dev/null | awk '
    NR == 2 && $0 ~ /^[[:space:]]*Type: ssh-ed25519-cert-v01@openssh\.com host certificate$/ { host = 1 }
    NR == 3 && host && $1 == "Public" && $2 == "key:" && $3 == "ED25519-CERT" && NF == 4 && $4 ~ /^SHA256:[A-Za-z0-9+\/]+$/ { print $4 }'
}

# The SHA256 fingerprint of the public key file FILE (`type base64 [comment]`), as
# `ssh-keygen -l` prints it: unpadded base64 of the SHA-256 of the key blob. Busybox
# applets only (a second ssh-keygen run would cost ~0.1 s under TCG). Only for a key
# file this guest wrote itself (its host key, format checked at boot).
key_fingerprint() {
  kf_hex=$(awk 'NR == 1 { print $2 }' "$1" | base64 -d | sha256sum | cut -c1-64)
  case $kf_hex in *[!0-9a-f]* | '') return 1 ;; esac
  # shellcheck disable=SC2059 # the format is the digest as \xHH escapes
  printf 'SHA256:%s\n' "$(printf "$(printf '%s' "$kf_hex" | sed 's/../\\x&/g')" | base64 | tr -d '=\n')"
}
