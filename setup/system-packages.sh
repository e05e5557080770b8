#!/usr/bin/env bash
# The Debian packages this machine still needs, from steps/orca_steps/system_tools.tsv.
#   setup/system-packages.sh list    [--group G] [--fresh]   print the packages to install (G: step,dev)
#   setup/system-packages.sh install [--group G]             install them (root), or print the command
#   setup/system-packages.sh dry-run [--group G] --fresh     apt-get install -s of a fresh machine's list
# A tool counts as present when it is on PATH, except with --fresh: then a tool that
# one of the listed packages provides counts as missing (this project installed it), while a tool
# provided by anything else is the machine's own and is kept (NodeSource's npm). So --fresh gives
# exactly the list a fresh machine of this kind installs, on a machine that already has everything.
set -euo pipefail
cd "$(dirname "$0")/.."
table=steps/orca_steps/system_tools.tsv
action=${1:?usage: setup/system-packages.sh list|install|dry-run [--group G] [--fresh]}; shift
group=step,dev fresh=0
while [ $# -gt 0 ]; do
  case "$1" in
    --group) group=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    *) echo "setup/system-packages.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

listed=$(awk -F'\t' '!/^#/ && NF >= 3 {print $2}' "$table" | sort -u)

# The file a tool resolves to on PATH, or nothing when it is absent.
resolve() {
  command -v "$1" >/dev/null 2>&1 && readlink -f "$(command -v "$1")" || true
}

# Which package owns a file (dpkg -S), or nothing.
owner() {
  dpkg -S "$1" 2>/dev/null | head -n 1 | cut -d: -f1 || true
}

missing() {
  awk -F'\t' -v g=",$group," '!/^#/ && NF >= 3 && index(g, "," $3 ",") {print $1 "\t" $2}' "$table" |
  while IFS=$'\t' read -r tool package; do
    found=$(resolve "$tool")
    if [ -z "$found" ]; then echo "$package"; continue; fi
    if [ "$fresh" = 1 ]; then
      pkg=$(owner "$found")
      if grep -qx -- "$pkg" <<<"$listed"; then echo "$package"; fi
    fi
  done | sort -u | tr '\n' ' ' | sed 's/ $//'
}

packages=$(missing)
case "$action" in
  list) echo "$packages" ;;
  install)
    [ -n "$packages" ] || exit 0
    if [ "$(id -u)" != 0 ]; then
      echo "missing Debian packages: $packages. Run as root:  apt-get update && apt-get install -y $packages" >&2
      exit 1
    fi
    echo "installing Debian packages: $packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null ;;
  dry-run)
    [ "$fresh" = 1 ] || { echo "dry-run checks a fresh machine's list: add --fresh" >&2; exit 2; }
    [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ] || apt-get update -qq
    echo "a fresh machine runs: apt-get install -y $packages"
    out=$(apt-get install -s $packages 2>&1) || { echo "$out" | tail -n 15; echo "FAILED: apt-get cannot install $packages here" >&2; exit 1; }
    echo "apt-get install -s: $(grep -c '^Inst ' <<<"$out" || true) packages would be installed, no conflict" ;;
  *) echo "setup/system-packages.sh: unknown action $action" >&2; exit 2 ;;
esac
