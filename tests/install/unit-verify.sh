#!/bin/bash
# The systemd unit as `meson install` puts it: `systemd-analyze verify` has
# nothing to say about it (a warning is a failure), it keeps the settings
# vbackupd relies on, and `systemd-analyze security` rates it (the exposure
# score is printed; above VB_MAX_EXPOSURE, default 2.0, is a failure).  The
# drop-in that lets the host map files (vbackupd-host-map.conf) adds exactly
# the capabilities, namespaces and system calls the mapper's sandbox needs,
# verifies, and rates at most 2.5 with the unit.
. "$(dirname "$0")/../lib.sh"
requires systemd-analyze
requires meson
: "${VB_BUILDDIR:?VB_BUILDDIR must name the build folder (meson sets it)}"

D="$T/dest"
meson install -C "$VB_BUILDDIR" --no-rebuild --destdir "$D" --quiet >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; fail "meson install --destdir failed"; }
mapfile -t units < <(find "$D" -name vbackupd.service)
[ "${#units[@]}" -eq 1 ] || fail "expected one vbackupd.service under DESTDIR, found ${#units[@]}"
unit=${units[0]}
ok "unit installed as ${unit#"$D"}"

# the settings vbackupd depends on
for want in 'Type=notify' 'NotifyAccess=main' 'ExecReload=/bin/kill -HUP $MAINPID' \
        'RuntimeDirectory=vbackup' 'StateDirectory=vbackup' 'ProtectSystem=strict' \
        'PrivateNetwork=yes' 'RestrictAddressFamilies=AF_UNIX' 'NoNewPrivileges=yes' \
        'MemoryDenyWriteExecute=yes' 'SystemCallArchitectures=native'; do
    grep -qxF -- "$want" "$unit" || fail "the unit lacks '$want'"
done
filter=" $(sed -n 's/^SystemCallFilter=//p' "$unit") "
for sc in io_uring_setup io_uring_enter io_uring_register; do
    [[ $filter == *" $sc "* ]] || fail "SystemCallFilter= does not allow $sc (vbackupd reads with io_uring)"
done
grep -q '^ProcSubset=pid' "$unit" && fail "ProcSubset=pid would hide /proc/pressure from the schedule policy"
grep -qE '@[A-Za-z_]+@' "$unit" && fail "the unit has unsubstituted @...@: $(grep -E '@[A-Za-z_]+@' "$unit")"
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit")
[ "$caps" = "CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_CHOWN" ] ||
    fail "CapabilityBoundingSet= is '$caps'"
ok "the unit has the settings vbackupd relies on"

# ExecStart: the installed daemon, with its own default configuration
exec_line=$(sed -n 's/^ExecStart=//p' "$unit")
bin=${exec_line%% *}
[ -x "$D$bin" ] || fail "ExecStart names $bin, which is not installed"
conf=$(sed -n 's/.*--config \([^ ]*\).*/\1/p' <<<"$exec_line")
[ -n "$conf" ] || fail "ExecStart gives no --config: $exec_line"
"$D$bin" --help | grep -qF "(default $conf)" ||
    fail "ExecStart's --config $conf is not vbackupd's default: $("$D$bin" --help | grep default)"
ok "ExecStart=$exec_line"

# Verify a copy whose ExecStart points into DESTDIR (systemd checks that the
# binary exists); the manuals of Documentation= are found through MANPATH.
man8=$(find "$D" -path '*/man8/vbackupd.8' | head -n 1)
[ -n "$man8" ] || fail "vbackupd.8 is not installed"
mkdir "$T/unit"
sed "s|^ExecStart=$bin |ExecStart=$D$bin |" "$unit" >"$T/unit/vbackupd.service"
rc=0
(cd "$T/unit" && MANPATH=$(dirname "$(dirname "$man8")") \
    systemd-analyze verify "$T/unit/vbackupd.service") >"$T/verify.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || [ -s "$T/verify.out" ]; then
    cat "$T/verify.out"
    fail "systemd-analyze verify: exit $rc, output above"
fi
ok "systemd-analyze verify: nothing to say"

# the exposure score
if ! systemd-analyze --help | grep -q -- '--offline'; then
    echo "note: this systemd-analyze has no --offline; no exposure score"
    exit 0
fi
systemd-analyze security --offline=yes "$T/unit/vbackupd.service" >"$T/security.out" 2>&1 ||
    { cat "$T/security.out"; fail "systemd-analyze security --offline=yes failed"; }
echo "exposures left (systemd-analyze security --offline=yes):"
# the rows with a non-zero exposure (last column), whatever marks them: the
# mark is ✗ in a UTF-8 locale and - in the C locale; no row is no failure
awk '$NF ~ /^[0-9]+(\.[0-9]+)?$/ && $NF > 0' "$T/security.out" | sed -E 's/ {2,}/  /g; s/^/  /'
score=$(sed -n 's/.*Overall exposure level for vbackupd.service: \([0-9.]*\).*/\1/p' "$T/security.out")
[ -n "$score" ] || { cat "$T/security.out"; fail "no exposure score in the output"; }
max=${VB_MAX_EXPOSURE:-2.0}
echo "exposure score: $score (systemd $(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'); at most $max allowed)"
awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' ||
    fail "exposure $score is above $max: the unit lost some of its hardening"
ok "exposure $score"

# the drop-in for host maps: exactly what the mapper's sandbox needs, no more
mapfile -t dropins < <(find "$D" -name vbackupd-host-map.conf)
[ "${#dropins[@]}" -eq 1 ] || fail "expected one vbackupd-host-map.conf, found ${#dropins[@]}"
dropin=${dropins[0]}
body=$(grep -v '^#' "$dropin" | grep -v '^$')
want=$'[Service]\nCapabilityBoundingSet=CAP_SETUID CAP_SETGID\nRestrictNamespaces=\nRestrictNamespaces=user mnt net ipc\nSystemCallFilter=@mount'
[ "$body" = "$want" ] || fail "the host-map drop-in grants more or less than the sandbox needs:
$body"
grep -q '@DATADIR@' "$dropin" && fail "the drop-in has an unsubstituted @DATADIR@"
# a drop-in's [Service] section is the unit's, later: appended to a copy
mkdir "$T/hm"
cat "$T/unit/vbackupd.service" "$dropin" > "$T/hm/vbackupd.service"
rc=0
(cd "$T/hm" && MANPATH=$(dirname "$(dirname "$man8")") \
    systemd-analyze verify "$T/hm/vbackupd.service") >"$T/verify-hm.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || [ -s "$T/verify-hm.out" ]; then
    cat "$T/verify-hm.out"
    fail "systemd-analyze verify with the host-map drop-in: exit $rc, output above"
fi
systemd-analyze security --offline=yes "$T/hm/vbackupd.service" >"$T/security-hm.out" 2>&1 ||
    { cat "$T/security-hm.out"; fail "systemd-analyze security with the drop-in failed"; }
hm=$(sed -n 's/.*Overall exposure level for vbackupd.service: \([0-9.]*\).*/\1/p' "$T/security-hm.out")
[ -n "$hm" ] || { cat "$T/security-hm.out"; fail "no exposure score with the drop-in"; }
echo "exposure score with the host-map drop-in: $hm (at most 2.5 allowed)"
awk -v s="$hm" 'BEGIN { exit !(s <= 2.5) }' ||
    fail "exposure $hm with the host-map drop-in is above 2.5"
ok "the host-map drop-in verifies; exposure $hm"
