# Parses one line of the VM channel (docs/vm-channel.md) in the guest, with busybox awk.
# Accepted: one JSON object whose member names are plain identifiers and whose values are
# strings without escapes, integers, true/false/null, or flat arrays of those. That is all
# the protocol sends (its values never contain '"' or '\'). Anything else (escapes, nested
# objects, fractions, duplicate names, control characters, trailing bytes, more than one
# line) makes the whole line malformed: nothing is printed and the exit status is 1.
# Output, one per line: `name=<t>:value` for a scalar member, where <t> is s (string),
# n (integer) or l (literal true/false/null); for an array member `name#=<count>` then
# `name[]=<t>:value` per element. Values never contain a newline (control characters are
# rejected), so the shell can read the output line by line.

function fail() { malformed = 1; exit 1 }
function ws() { sub(/^ +/, "", s) }
# Consumes the token matching `re` (an anchored regex) at the start of s.
function take(re) {
  if (!match(s, re)) return 0
  tok = substr(s, 1, RLENGTH)
  s = substr(s, RLENGTH + 1)
  return 1
}
function scalar() {
  if (take("^\"[^\"]*\"")) { val = "s:" substr(tok, 2, length(tok) - 2); return 1 }
  if (take("^-?(0|[1-9][0-9]*)")) { val = "n:" tok; return 1 }
  if (take("^(true|false|null)")) { val = "l:" tok; return 1 }
  return 0
}

NR > 1 { fail() }
{
  s = $0
  if (length(s) > 16384 || index(s, "\\") > 0 || s ~ /[[:cntrl:]]/) fail()
  n = 0
  ws(); if (!take("^[{]")) fail(); ws()
  if (!take("^[}]")) {
    for (;;) {
      ws(); if (!take("^\"[A-Za-z][A-Za-z0-9_-]*\"")) fail()
      name = substr(tok, 2, length(tok) - 2)
      if (name in seen) fail()
      seen[name] = 1
      ws(); if (!take("^:")) fail(); ws()
      if (take("^[[]")) {
        count = 0; first = n + 1; n++
        ws()
        if (!take("^[]]")) {
          for (;;) {
            ws(); if (!scalar()) fail()
            out[++n] = name "[]=" val; count++
            ws(); if (take("^[]]")) break
            if (!take("^,")) fail()
          }
        }
        out[first] = name "#=" count
      } else if (scalar()) {
        out[++n] = name "=" val
      } else fail()
      ws(); if (take("^[}]")) break
      if (!take("^,")) fail()
    }
  }
  ws(); if (s != "") fail()
}
END {
  if (malformed || NR != 1) exit 1
  for (i = 1; i <= n; i++) print out[i]
}
