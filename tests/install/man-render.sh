#!/bin/bash
# The manuals as built (doc/meson.build): each renders with man and groff
# without a warning, and each names what the programs themselves say they
# take: every command and option of the usage texts, every configuration
# section and key vbackupd accepts, every key of the shipped policies.
# Usage: man-render.sh VBACKUP_TOOL
. "$(dirname "$0")/../lib.sh"
requires man
requires groff
: "${VB_BUILDDIR:?VB_BUILDDIR must name the build folder (meson sets it)}"
: "${VB_SRCDIR:?VB_SRCDIR must name the source tree (meson sets it)}"
: "${VBACKUPD:?VBACKUPD must point at the vbackupd binary (meson sets it)}"
TOOL=${1:?usage: man-render.sh VBACKUP_TOOL}
M="$VB_BUILDDIR/doc"

# ---- rendering ---------------------------------------------------------------------
for page in vbackup.1 vbackupctl.8 vbackupd.8 vbackupd.conf.5; do
    p="$M/$page"
    [ -f "$p" ] || fail "$p was not built"
    grep -qE '@[A-Za-z_]+@' "$p" && fail "$page has unsubstituted @...@: $(grep -E '@[A-Za-z_]+@' "$p")"
    rc=0
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$p" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" -ne 0 ] || [ -s "$T/err" ]; then
        cat "$T/err"
        fail "man --warnings -l $page: exit $rc, warnings above"
    fi
    grep -q '^NAME' "$T/out" && grep -q '^SEE ALSO' "$T/out" || fail "$page lacks NAME or SEE ALSO"
    rc=0
    groff -man -ww -z "$p" 2>"$T/err" || rc=$?
    if [ "$rc" -ne 0 ] || [ -s "$T/err" ]; then
        cat "$T/err"
        fail "groff -man -ww -z $page: exit $rc, warnings above"
    fi
    # not a failure: lines wider than the terminal (long examples); counted
    # in the C locale, where every character is one byte
    LC_ALL=C MANWIDTH=80 man -l "$p" 2>/dev/null |
        awk -v p="$page" 'length > 80 { print "note: " p ": a line wider than 80 columns: " $0 }'
    ok "$page renders without warnings"
done

# ---- what the programs take ----------------------------------------------------------
# has PAGE WORD: the page's source names WORD (hyphens as \-)
has() {
    local esc=${2//-/\\-}
    grep -qF -- "$esc" "$M/$1" || fail "$1 does not mention '$2'"
}
# options TEXT: the long options in a usage text
options() { grep -oE -- '--[a-z][a-z-]*' | sort -u; }

for o in $("$VBACKUPD" --help | options); do has vbackupd.8 "$o"; done
for o in $("$VBACKUPCTL" --help | options); do has vbackupctl.8 "$o"; done
# vbackupctl's commands: the first word of the usage's command lines
for c in $("$VBACKUPCTL" --help | sed -nE 's/^  ([a-z][a-z-]*)( .*|$)/\1/p' | sort -u); do
    has vbackupctl.8 "$c"
done
for o in $("$TOOL" --help | options); do has vbackup.1 "$o"; done
for c in $("$TOOL" --help | sed -nE 's/^  vbackup ([a-z][a-z-]*).*/\1/p' | sort -u); do
    has vbackup.1 "$c"
done
ok "the manuals name every command and option of the usage texts"

# the configuration: sections and keys, as vbackupd's own errors list them
"$VBACKUPCTL" --repo "$T/repo" --quiet init --format 1
cfg() { printf '%s\n' "$@" >"$T/conf"; "$VBACKUPD" --config "$T/conf" --check-config 2>&1 || true; }
target=("[target t]" "repository = $T/repo")
sections=$(cfg "${target[@]}" "[bogus_section]" "x = 1" |
           sed -nE 's/.*unknown section \[bogus_section\] \((.*)\).*/\1/p')
[ -n "$sections" ] || fail "vbackupd does not list its sections for an unknown one"
IFS=, read -ra list <<<"$sections"
for s in "${list[@]}"; do
    s=$(xargs <<<"$s")                      # "vm NAME" or "daemon"
    name=${s%% *}
    grep -qE "^\.SH \[$name[] ]" "$M/vbackupd.conf.5" ||
        fail "vbackupd.conf.5 has no section for [$s]"
    case $name in
    daemon | policy) continue ;;            # keys: below
    esac
    group="[$name]"
    [ "$s" != "$name" ] && group="[$name x]"
    # a key vbackupd does not know, first in the section: the error lists the keys
    keys=$(cfg "${target[@]}" "$group" "bogus_key = 1" |
           sed -nE "s/.*unknown key 'bogus_key' \((.*)\).*/\1/p")
    [ -n "$keys" ] || { [ "$name" = target ] && keys=repository; }
    [ -n "$keys" ] || fail "vbackupd does not list the keys of [$s] for an unknown one"
    IFS=, read -ra kl <<<"$keys"
    for k in "${kl[@]}"; do
        k=$(xargs <<<"$k"); k=${k%%.*}      # disk.SERIAL: "disk"
        grep -qE "^\.BR? ${k//./\\.}([. ]|$)" "$M/vbackupd.conf.5" ||
            fail "vbackupd.conf.5 does not describe '$k' of [$s]"
    done
done
# [daemon]: the keys config.c accepts
daemon_keys=$(sed -n '/daemon_keys\[\] = {/,/NULL/p' "$VB_SRCDIR/hostd/vbackupd/config.c" |
              grep -oE '"[a-z_]+"' | tr -d '"')
[ -n "$daemon_keys" ] || fail "no daemon_keys in hostd/vbackupd/config.c"
for k in $daemon_keys; do
    grep -qE "^\.BR $k " "$M/vbackupd.conf.5" || fail "vbackupd.conf.5 does not describe [daemon] $k"
done
# the shipped policies: their own message for an unknown key lists their keys
for pol in merge schedule; do
    keys=$(cfg "[daemon]" "plugin_dir = $VB_BUILDDIR/policies" "policies = $pol" "${target[@]}" \
               "[policy $pol]" "bogus_key = 1" | sed -nE 's/.*\(keys: (.*)\).*/\1/p')
    [ -n "$keys" ] || fail "policy $pol does not list its keys for an unknown one"
    IFS=, read -ra kl <<<"$keys"
    for k in "${kl[@]}"; do
        k=$(xargs <<<"$k")
        grep -qE "^\.BR (.*[ \"])?$k[ \"]" "$M/vbackupd.conf.5" ||
            fail "vbackupd.conf.5 does not describe '$k' of the $pol policy"
    done
done
ok "vbackupd.conf.5 describes every section and key vbackupd and the policies take"
