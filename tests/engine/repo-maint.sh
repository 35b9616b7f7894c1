#!/usr/bin/env bash
# verify, prune and gc as a user meets them: verify names each damaged chunk
# and the snapshots that need it and exits non-zero; prune keeps what the
# retention options say (and --dry-run changes nothing); gc frees exactly the
# chunks no snapshot references.
source "$(dirname "$0")/../lib.sh"
requires qemu-img
requires qemu-io
cd "$T"
R="$T/repo"
"$V" --repo "$R" init --format 1 >/dev/null

qemu-img create -q -f qcow2 d.qcow2 32M
ids=()
for i in 1 2 3 4; do
    # offset 0 changes every time; offset i*4M is written once and shared after
    qemu-io -c "write -P $((i + 100)) 0 1M" -c "write -P $i $((i * 4))M 4M" d.qcow2 >/dev/null
    ids+=("$("$V" --repo "$R" backup-disk --vm vm --name d --format qcow2 d.qcow2 | last_line)")
done
"$V" --repo "$R" verify > v.out || fail "verify of a healthy repository failed"
grep -q "verified 4 snapshots" v.out || fail "verify summary"

# --- damage a chunk shared by snapshots 2..4 (written by snapshot 2) -------
"$V" --repo "$R" show "${ids[1]}" --json > s.json
python3 - "$R" s.json > victim <<'PY'
import json, sys, struct
repo, snap = sys.argv[1], json.load(open(sys.argv[2]))
f = open(f"{repo}/snapshots/{snap['id']}/disk.fidx", "rb").read()
ids = [f[64 + 32 * i: 96 + 32 * i].hex() for i in range((len(f) - 64) // 32)]
print(ids[2])  # the chunk at 8 MiB, written by snapshot 2
PY
victim=$(cat victim)
chunk="$R/chunks/${victim:0:2}/$victim"
cp "$chunk" chunk.good
flip_byte "$chunk" 100
rc=0; "$V" --repo "$R" verify > v.out || rc=$?
[ "$rc" = 1 ] || fail "verify exit $rc on a damaged chunk"
grep -q "damaged chunk $victim: .*checksum" v.out || { cat v.out; fail "verify does not name the chunk"; }
for k in 1 2 3; do
    grep "damaged chunk $victim" v.out | grep -qE " ${ids[$k]}( |\$)" || fail "verify does not name ${ids[$k]}"
done
grep "damaged chunk $victim" v.out | grep -qE " ${ids[0]}( |\$)" && fail "verify blames ${ids[0]}"
"$V" --repo "$R" verify --json > v.json || true
python3 -c "
import json; d = json.load(open('v.json'))
assert not d['ok'] and len(d['damaged_chunks']) == 1 and len(d['snapshots_affected']) == 3, d"
# verify of one snapshot that does not use it passes
"$V" --repo "$R" verify "${ids[0]}" >/dev/null || fail "verify of an intact snapshot failed"
# restore of a damaged snapshot fails with a clear message and leaves no file
expect_fail "checksum mismatch" "$V" --repo "$R" restore-disk "${ids[3]}" --to bad.raw
[ ! -e bad.raw ] || fail "a failed restore left its file"
# a missing chunk
mv "$chunk" chunk.bad
rc=0; "$V" --repo "$R" verify > v.out || rc=$?
[ "$rc" = 1 ] && grep -q "damaged chunk $victim: chunk .*missing" v.out || { cat v.out; fail "missing chunk"; }
cp chunk.good "$chunk"
"$V" --repo "$R" verify >/dev/null || fail "verify after repair"
# a damaged snapshot index
fidx="$R/snapshots/${ids[0]}/disk.fidx"
cp "$fidx" fidx.good
flip_byte "$fidx" 70
rc=0; "$V" --repo "$R" verify > v.out || rc=$?
[ "$rc" = 1 ] && grep -q "damaged snapshot ${ids[0]}: .*disk.fidx is damaged" v.out || { cat v.out; fail "damaged index"; }
expect_fail "cannot read snapshot ${ids[0]}, nothing removed" "$V" --repo "$R" gc
cp fidx.good "$fidx"

# --- prune --------------------------------------------------------------
expect_fail "at least one --keep" "$V" --repo "$R" prune
"$V" --repo "$R" prune --keep-last 2 --dry-run > p.out
[ "$(grep -c '^would remove' p.out)" = 2 ] || { cat p.out; fail "dry-run plan"; }
[ "$(n_snapshots "$R")" = 4 ] || fail "--dry-run removed snapshots"
"$V" --repo "$R" stats --json > before.json
"$V" --repo "$R" prune --keep-last 2 > p.out
[ "$(n_snapshots "$R")" = 2 ] || fail "prune --keep-last 2"
"$V" --repo "$R" snapshots --json > list.json
grep -q "\"${ids[3]}\"" list.json || { cat list.json p.out; fail "prune removed the newest"; }
"$V" --repo "$R" gc --dry-run --json > g.json
[ "$(json_get '["chunks_removed"]' < g.json)" -gt 0 ] || fail "gc --dry-run finds nothing"
"$V" --repo "$R" gc --json > g.json
removed=$(json_get '["chunks_removed"]' < g.json)
[ "$removed" -gt 0 ] || fail "gc removed nothing"
"$V" --repo "$R" gc --json | json_get '["chunks_removed"]' | grep -qx 0 || fail "second gc removed more"
"$V" --repo "$R" verify >/dev/null || fail "verify after gc"
for k in 2 3; do
    "$V" --repo "$R" restore-disk "${ids[$k]}" --to r$k.raw >/dev/null
done
same_image d.qcow2 r3.raw

# --- calendar retention: fixed dates, in a pinned local time zone -------------
# (every day of a year, more zones and the DST rules are in tests/unit/test-retention.c)
for i in 1 2 3 4 5 6; do
    "$V" --repo "$R" backup-disk --vm cal --format qcow2 d.qcow2 | last_line >> cal.ids
done
python3 - "$R" cal.ids <<'PY'
import json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
repo, ids = sys.argv[1], open(sys.argv[2]).read().split()
berlin = ZoneInfo("Europe/Berlin")
# oldest first; 2028-03-26 is the 23-hour day when Berlin moves to summer time
when = ["2028-02-20 12:00", "2028-03-15 12:00", "2028-03-25 23:30",
        "2028-03-26 00:30", "2028-03-26 23:30", "2028-04-01 00:30"]
for sid, w in zip(ids, when):
    p = f"{repo}/snapshots/{sid}/index.json"
    d = json.load(open(p))
    d["created_ns"] = int(datetime.fromisoformat(w).replace(tzinfo=berlin).timestamp()) * 10**9
    d.pop("created", None)
    json.dump(d, open(p, "w"))
PY
TZ=Europe/Berlin "$V" --repo "$R" prune --vm cal --keep-daily 3 --keep-monthly 2 --dry-run --json > p.json
python3 - p.json cal.ids <<'PY'
import json, sys
plan = {e["id"]: e for e in json.load(open(sys.argv[1]))}
ids = open(sys.argv[2]).read().split()
got = [sorted(plan[i]["reasons"]) for i in ids]
# daily 3: Apr 1, Mar 26 (its 23:30, not its 00:30), Mar 25; monthly 2: April and March
want = [[], [], ["daily"], [], ["daily", "monthly"], ["daily", "monthly"]]
assert got == want, (got, want)
PY
# the same instants in UTC: 2028-03-26 00:30 Berlin is 2028-03-25 23:30 UTC, the newest of its day
TZ=UTC "$V" --repo "$R" prune --vm cal --keep-daily 3 --dry-run --json > p.json
python3 - p.json cal.ids <<'PY'
import json, sys
plan = {e["id"]: e for e in json.load(open(sys.argv[1]))}
ids = open(sys.argv[2]).read().split()
assert [plan[i]["keep"] for i in ids] == [False, False, False, True, True, True], plan
PY
TZ=Europe/Berlin "$V" --repo "$R" prune --vm cal --keep-daily 3 --keep-monthly 2 > p.out
[ "$(n_snapshots "$R")" = 5 ] || { cat p.out; fail "calendar prune removed the wrong number"; }
ok "verify, prune, gc"
