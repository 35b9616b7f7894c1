#!/bin/bash
# Where `meson install` puts everything.
#  1. This build, installed with --destdir: every file at its place for the
#     build's prefix (programs, policies, headers, unit, example
#     configuration, manuals), and nothing that would overwrite an
#     administrator's configuration.
#  2. A fresh build of the source tree with --prefix=$T/usr, installed: the
#     installed vbackupd's default configuration and policy folder follow the
#     prefix (--help shows the configuration; --check-config with no
#     plugin_dir finds the installed policies), and so do the unit and the
#     manuals.
. "$(dirname "$0")/../lib.sh"
requires meson
requires python3
: "${VB_BUILDDIR:?VB_BUILDDIR must name the build folder (meson sets it)}"
: "${VB_SRCDIR:?VB_SRCDIR must name the source tree (meson sets it)}"

# dirs BUILD: prefix and install folders of a build, absolute, as shell variables
dirs() {
    meson introspect "$1" --buildoptions | python3 -c '
import json, os, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
p = o["prefix"]
for k in ("sbindir", "libdir", "sysconfdir", "mandir", "includedir", "libexecdir", "datadir"):
    print("%s=%s" % (k, os.path.join(p, o[k])))
print("prefix=%s" % p)
print("sanitize=%s" % o["b_sanitize"])'
}

# unit_dir PREFIX: where the unit goes (doc/meson.build)
unit_dir() {
    if [ "$1" = /usr ] && pkg-config --exists systemd 2>/dev/null; then
        pkg-config --variable=systemdsystemunitdir systemd
    else
        echo "$1/lib/systemd/system"
    fi
}

# expect_layout ROOT: the files of an installation below ROOT (DESTDIR or /)
expect_layout() {
    local root=$1 f
    for f in vbackupd vbackupctl vbackup; do
        [ -f "$root$sbindir/$f" ] && [ -x "$root$sbindir/$f" ] || fail "$sbindir/$f is not installed"
    done
    for f in passthrough merge schedule; do
        [ -f "$root$libdir/vbackup/policies/$f.so" ] || fail "$libdir/vbackup/policies/$f.so is not installed"
    done
    [ -f "$root$libdir/nbdkit/plugins/nbdkit-vbackup-plugin.so" ] ||
        fail "$libdir/nbdkit/plugins/nbdkit-vbackup-plugin.so is not installed"
    for f in frame.h proto.h policy.h; do
        cmp -s "$root$includedir/vbackup/$f" "$VB_SRCDIR/include/vbackup/$f" ||
            fail "$includedir/vbackup/$f is not installed (or differs from the source)"
    done
    [ -f "$root$(unit_dir "$prefix")/vbackupd.service" ] ||
        fail "the unit is not in $(unit_dir "$prefix")"
    # the file system mapper, and the drop-in that lets it run under the unit
    [ -x "$root$libexecdir/vbackup/vbackup-mapper" ] ||
        fail "$libexecdir/vbackup/vbackup-mapper is not installed"
    grep -qF "$datadir/vbackup/vbackupd-host-map.conf" "$root$datadir/vbackup/vbackupd-host-map.conf" ||
        fail "$datadir/vbackup/vbackupd-host-map.conf is not installed (or does not name its place)"
    cmp -s "$root$sysconfdir/vbackup/vbackupd.conf.example" "$VB_SRCDIR/hostd/vbackupd.conf.example" ||
        fail "$sysconfdir/vbackup/vbackupd.conf.example is not installed"
    [ ! -e "$root$sysconfdir/vbackup/vbackupd.conf" ] ||
        fail "installing must not write $sysconfdir/vbackup/vbackupd.conf (the administrator's)"
    for f in man1/vbackup.1 man8/vbackupctl.8 man8/vbackupd.8 man5/vbackupd.conf.5; do
        [ -f "$root$mandir/$f" ] || fail "$mandir/$f is not installed"
        grep -qE '@[A-Za-z_]+@' "$root$mandir/$f" && fail "$mandir/$f has unsubstituted @...@"
    done
    return 0
}

# ---- 1. this build, DESTDIR ---------------------------------------------------
eval "$(dirs "$VB_BUILDDIR")"
D="$T/dest"
meson install -C "$VB_BUILDDIR" --no-rebuild --destdir "$D" --quiet >"$T/install.log" 2>&1 ||
    { cat "$T/install.log"; fail "meson install --destdir failed"; }
expect_layout "$D"
if [ "$sanitize" = none ]; then
    # the guest tool is copied into guests: static, libc only
    if readelf -d "$D$sbindir/vbackup" 2>/dev/null | grep -q NEEDED; then
        fail "$sbindir/vbackup is not static: $(readelf -d "$D$sbindir/vbackup" | grep NEEDED)"
    fi
fi
ok "prefix $prefix: programs in $sbindir, policies in $libdir/vbackup/policies," \
   "unit in $(unit_dir "$prefix"), example in $sysconfdir/vbackup, manuals in $mandir"
echo "installed (below DESTDIR):"
(cd "$D" && find . -type f | sed 's/^\./  /' | sort)

# ---- 2. a prefix of its own -------------------------------------------------------
P="$T/p/usr"
B="$T/build"
echo "building the source tree again with --prefix=$P ..."
meson setup --prefix="$P" -Dbuildtype=plain -Db_sanitize=none "$B" "$VB_SRCDIR" \
    >"$T/setup.log" 2>&1 || { tail -n 30 "$T/setup.log"; fail "meson setup --prefix=$P failed"; }
meson install -C "$B" --quiet >"$T/build.log" 2>&1 ||
    { tail -n 30 "$T/build.log"; fail "building and installing with --prefix=$P failed"; }
eval "$(dirs "$B")"
[ "$prefix" = "$P" ] || fail "prefix is $prefix, not $P"
expect_layout ""
ok "prefix $P: every file at its place"

# the daemon's compiled-in paths follow the prefix
conf="$sysconfdir/vbackup/vbackupd.conf"
"$sbindir/vbackupd" --help >"$T/help" || fail "vbackupd --help failed"
grep -qF "(default $conf)" "$T/help" || { cat "$T/help"; fail "vbackupd's default configuration is not $conf"; }
"$sbindir/vbackupctl" --repo "$T/repo" --quiet init --encryption none
printf '[target archive]\nrepository = %s\n' "$T/repo" >"$conf"
"$sbindir/vbackupd" --check-config >"$T/check" 2>&1 || { cat "$T/check"; fail "vbackupd --check-config failed"; }
grep -qF "$conf: 1 targets, 0 VMs, policies: schedule merge" "$T/check" &&
    grep -qx "configuration OK" "$T/check" || { cat "$T/check"; fail "unexpected --check-config output"; }
ok "vbackupd --check-config reads $conf and finds the policies in $libdir/vbackup/policies"
# ... and only there: without them it says where it looked
mv "$libdir/vbackup/policies/merge.so" "$T/"
rc=0
"$sbindir/vbackupd" --check-config >"$T/check" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -qF "$libdir/vbackup/policies" "$T/check" ||
    { cat "$T/check"; fail "without merge.so, --check-config should fail naming $libdir/vbackup/policies (exit $rc)"; }
mv "$T/merge.so" "$libdir/vbackup/policies/"
ok "without merge.so it fails naming the installed policy folder"

# the installed vbackupctl runs the installed nbdkit plugin (its compiled-in path)
if command -v nbdkit >/dev/null && command -v qemu-img >/dev/null; then
    truncate -s 8M "$T/disk.raw"
    printf 'installed' | dd of="$T/disk.raw" bs=1 seek=4096 conv=notrunc 2>/dev/null
    id=$("$sbindir/vbackupctl" --repo "$T/repo" backup-disk --vm inst --format raw "$T/disk.raw" | tail -n 1)
    env -u VBACKUP_NBDKIT_PLUGIN "$sbindir/vbackupctl" --repo "$T/repo" export "$id" \
        --unix "$T/inst.sock" >"$T/export.out" 2>"$T/export.err" &
    epid=$!
    cleanup_add "kill $epid 2>/dev/null"
    until grep -q '^exporting' "$T/export.out"; do
        kill -0 "$epid" 2>/dev/null || { cat "$T/export.err"; fail "the installed export did not start"; }
        sleep 0.05
    done
    qemu-img compare -q -f raw -F raw "$T/disk.raw" "nbd+unix:///$id?socket=$T/inst.sock" ||
        fail "the installed export serves other bytes"
    kill -INT "$epid"
    wait "$epid" || fail "the installed export did not stop cleanly"
    grep -qF "$libdir/nbdkit/plugins/nbdkit-vbackup-plugin.so" "$mandir/man8/vbackupctl.8" ||
        fail "vbackupctl(8) does not name the installed plugin"
    ok "the installed vbackupctl export runs $libdir/nbdkit/plugins/nbdkit-vbackup-plugin.so"
fi

unit="$(unit_dir "$prefix")/vbackupd.service"
grep -qxF "ExecStart=$sbindir/vbackupd --config $conf" "$unit" ||
    fail "the unit's ExecStart is not '$sbindir/vbackupd --config $conf': $(grep ExecStart= "$unit")"
grep -qF "$conf" "$mandir/man8/vbackupd.8" && grep -qF "$libdir/vbackup/policies" "$mandir/man5/vbackupd.conf.5" ||
    fail "the manuals do not name $conf and $libdir/vbackup/policies"
ok "the unit and the manuals name $conf"
if command -v systemd-analyze >/dev/null; then
    # installed for real below the prefix: verify needs no substitution
    out=$(MANPATH="$mandir" systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
    ok "systemd-analyze verify $unit: nothing to say"
fi
# vbackupd runs the installed mapper unless told otherwise
grep -qaF "$libexecdir/vbackup/vbackup-mapper" "$sbindir/vbackupd" ||
    fail "vbackupd's default mapper is not $libexecdir/vbackup/vbackup-mapper"
ok "vbackupd's default mapper is $libexecdir/vbackup/vbackup-mapper"
"$sbindir/vbackup" --version >/dev/null || fail "the installed vbackup does not run"
"$sbindir/vbackupctl" --version >/dev/null || fail "the installed vbackupctl does not run"
ok "installed programs run"
