#!/usr/bin/env bash
# forget, prune, gc and stats on version 2 repositories, as a user meets
# them, on an unencrypted and an encrypted one holding copies of a version 1
# repository's disk snapshots of two VMs: prune --dry-run changes nothing;
# prune keeps the newest snapshot of each VM's disk and names the ones it
# removes; calendar rules give the same plan in two time zones for times away
# from midnight (the planner is version 1's, tests/unit/test-retention.c); an
# unknown id makes forget fail clearly; a live writer's lease keeps gc from
# deleting the packs it condemns, and gc deletes them once the lease is gone;
# data/ shrinks; the snapshots left restore byte for byte and verify
# --read-data is clean; a second gc finds nothing; stats agree with the list.
source "$(dirname "$0")/../lib.sh"
cd "$T"
V1="$T/v1"
"$V" --repo "$V1" init --format 1 >/dev/null

# --- version 1 snapshots: two VMs, three of each; every one rewrites its disk's
# first chunk (garbage once it is pruned) and adds 1 MiB further on (kept:
# the newest snapshot still has it)
declare -A newest
for round in 1 2 3; do
    for vm in web db; do
        [ -e "$vm.raw" ] || truncate -s 24M "$vm.raw"
        head -c 4M /dev/urandom | dd of="$vm.raw" bs=1M conv=notrunc status=none
        head -c 1M /dev/urandom | dd of="$vm.raw" bs=1M seek=$((round * 4)) conv=notrunc status=none
        id=$(v1_backup_disk "$V1" "$vm.raw" --vm "$vm" --name vda)
        echo "$id" >> all.ids
        newest[$vm]=$id
    done
done
# six of a VM "cal" whose times are then set: 2028-03-26 is the day Europe
# moves to summer time; every time is between 02:00 and 12:00 UTC, so it falls
# on the same date in UTC and in Japan (UTC+9)
when=(2028-02-20T06:00:00Z 2028-03-15T06:00:00Z 2028-03-25T04:00:00Z
      2028-03-26T03:00:00Z 2028-03-26T11:00:00Z 2028-04-01T05:00:00Z)
truncate -s 4M cal.raw
for w in "${when[@]}"; do
    head -c 64K /dev/urandom | dd of=cal.raw conv=notrunc status=none
    id=$(v1_backup_disk "$V1" cal.raw --vm cal --name vda)
    python3 - "$V1/snapshots/$id/index.json" "$w" <<'PY'
import json, sys
from datetime import datetime
p, w = sys.argv[1], sys.argv[2]
d = json.load(open(p))
d["created_ns"] = int(datetime.fromisoformat(w.replace("Z", "+00:00")).timestamp()) * 10**9
d.pop("created", None)
json.dump(d, open(p, "w"))
PY
    echo "$id" >> cal.ids
done
newest[cal]=$(tail -n 1 cal.ids)

printf 'correct horse\n' > pw
export VBACKUP_PASSWORD_FILE="$T/pw"
export VBACKUP_CACHE="$T/cache"

ids_of() { python3 -c 'import json,sys; print("\n".join(sorted(s["id"] for s in json.load(sys.stdin))))'; }
n_data() { find "$1/data" -type f | wc -l; }
gc_json() { "$V" --repo "$1" gc --json > gc.json || fail "gc --json of $1"; }
gc_field() { json_get "[\"$1\"]" < gc.json; }

for enc in none aes-256-gcm; do
    R="$T/v2-$enc"
    v2_copy_of "$V1" "$R" --encryption "$enc"
    cat all.ids cal.ids | sort > want.ids
    "$V" --repo "$R" snapshots --json | ids_of > got.ids
    cmp -s want.ids got.ids || fail "$enc: the copy does not hold every snapshot"

    # --- calendar rules: the same plan in UTC and in Japan ----------------------
    for tz in UTC0 JST-9; do
        TZ=$tz "$V" --repo "$R" prune --vm cal --keep-daily 3 --keep-monthly 2 --dry-run --json \
            > "cal-$tz.json" || fail "$enc: calendar prune --dry-run in $tz"
        python3 - "cal-$tz.json" cal.ids <<'PY' || fail "$enc: calendar plan in $tz"
import json, sys
plan = {e["id"]: e for e in json.load(open(sys.argv[1]))}
ids = open(sys.argv[2]).read().split()
assert set(plan) == set(ids), plan
got = [sorted(plan[i]["reasons"]) for i in ids]
# daily 3: Apr 1, Mar 26 (its 11:00, not its 03:00), Mar 25; monthly 2: April, March
want = [[], [], ["daily"], [], ["daily", "monthly"], ["daily", "monthly"]]
assert got == want, (got, want)
assert [plan[i]["keep"] for i in ids] == [w != [] for w in want], plan
PY
    done
    cmp -s cal-UTC0.json cal-JST-9.json || fail "$enc: the plan depends on the time zone"
    TZ=JST-9 "$V" --repo "$R" prune --vm cal --keep-daily 3 --keep-monthly 2 > p.out \
        || fail "$enc: calendar prune"
    grep -q "^3 snapshots removed; run 'vbackupctl gc'" p.out || fail "$enc: calendar prune: $(cat p.out)"
    "$V" --repo "$R" snapshots --vm cal --json | ids_of > got.ids
    sed -n '3p;5p;6p' cal.ids | sort > want.ids
    cmp -s want.ids got.ids || fail "$enc: calendar prune kept $(cat got.ids)"

    # --- prune --keep-last 1: --dry-run changes nothing, then the newest of each stays
    "$V" --repo "$R" snapshots --json > before.json
    files_before=$(find "$R" -type f -not -path "*/locks/*" | sort | md5sum)
    "$V" --repo "$R" prune --keep-last 1 --dry-run > p.out || fail "$enc: prune --dry-run"
    [ "$(grep -c '^would remove ' p.out)" = 6 ] || { cat p.out; fail "$enc: the dry-run's plan"; }
    grep -q "^6 snapshots would be removed" p.out || fail "$enc: the dry-run's summary: $(cat p.out)"
    "$V" --repo "$R" snapshots --json | cmp -s - before.json || fail "$enc: prune --dry-run changed the list"
    [ "$(find "$R" -type f -not -path "*/locks/*" | sort | md5sum)" = "$files_before" ] \
        || fail "$enc: prune --dry-run changed the store"
    data_before=$(n_data "$R")
    "$V" --repo "$R" prune --keep-last 1 > p.out || fail "$enc: prune --keep-last 1"
    printf '%s\n' "${newest[@]}" | sort > want.ids
    "$V" --repo "$R" snapshots --json | ids_of > got.ids
    cmp -s want.ids got.ids || fail "$enc: prune kept $(tr '\n' ' ' < got.ids)"
    sed -n 's/^remove  //p' p.out | sort > removed.ids
    (cat all.ids; sed -n '3p;5p' cal.ids) | sort | comm -23 - want.ids > want-removed.ids
    cmp -s removed.ids want-removed.ids || { cat p.out; fail "$enc: prune names the wrong ids"; }
    for vm in web db cal; do
        grep -qx "keep    ${newest[$vm]} (last)" p.out || { cat p.out; fail "$enc: prune's keep line for $vm"; }
    done
    grep -q "^6 snapshots removed; run 'vbackupctl gc' to free their chunks" p.out \
        || fail "$enc: prune's summary: $(cat p.out)"

    # --- forget: an unknown id, a malformed one ----------------------------------
    expect_fail "^vbackupctl: forget: snapshot web/2000-01-01T00:00:00Z not found" \
        "$V" --repo "$R" forget web/2000-01-01T00:00:00Z
    [ "$(cat "$T/out")" = "" ] || fail "$enc: forget of an unknown id says it forgot"
    rc=0; "$V" --repo "$R" forget ../etc > out 2>&1 || rc=$?
    [ "$rc" = 2 ] && grep -q "is not a snapshot id" out || fail "$enc: forget of a malformed id: exit $rc: $(cat out)"

    # --- gc while a writer's lease is live: condemned, kept; deleted once it ends
    lease="$R/leases/$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '{"host":"test","pid":1,"kind":"backup","created":"2028-01-01T00:00:00Z"}' > "$lease"
    find "$R/data" -type f | sort > packs.before
    "$V" --repo "$R" gc > g.out || fail "$enc: gc with a live lease"
    grep -q "^deleted 0 packs (0 B); condemned [1-9][0-9]* packs" g.out || fail "$enc: gc with a live lease: $(cat g.out)"
    grep -q "^1 condemned lists wait for the live leases of writers" g.out || fail "$enc: gc does not say it waits: $(cat g.out)"
    find "$R/data" -type f | sort | comm -23 packs.before - | grep -q . \
        && fail "$enc: gc deleted packs a live lease may use"
    gc_json "$R"
    [ "$(gc_field lists_waiting)" = 1 ] && [ "$(gc_field packs_deleted)" = 0 ] && [ "$(gc_field packs_condemned)" = 0 ] \
        || fail "$enc: a second gc with the lease live: $(cat gc.json)"
    rm "$lease"
    gc_json "$R"
    [ "$(gc_field lists_waiting)" = 0 ] && [ "$(gc_field lists_done)" = 1 ] && [ "$(gc_field packs_deleted)" -gt 0 ] \
        || fail "$enc: gc once the lease is gone: $(cat gc.json)"
    [ "$(n_data "$R")" -lt "$data_before" ] || fail "$enc: data/ did not shrink ($data_before -> $(n_data "$R"))"

    # --- what is left restores and verifies; a second gc finds nothing -----------
    for vm in web db cal; do
        s=${newest[$vm]}
        "$V" --repo "$R" --quiet restore-disk "$s" --to "r-$enc-$vm.raw" || fail "$enc: restore-disk $s"
        cmp "r-$enc-$vm.raw" "$(v1_restored "$s")" || fail "$enc: $s restores different bytes"
    done
    "$V" --repo "$R" verify --read-data > out || { cat out; fail "$enc: verify --read-data after gc"; }
    grep -q "verify: 3 snapshots, .* read: ok" out || fail "$enc: verify's summary: $(cat out)"
    data_after=$(n_data "$R")
    gc_json "$R"
    for f in packs_condemned packs_deleted packs_repacked lists_written lists_waiting; do
        [ "$(gc_field "$f")" = 0 ] || fail "$enc: a second gc: $f is not 0: $(cat gc.json)"
    done
    [ "$(n_data "$R")" = "$data_after" ] || fail "$enc: a second gc changed data/"
    "$V" --repo "$R" gc --dry-run > g.out || fail "$enc: gc --dry-run"
    grep -q "^would delete 0 packs (0 B) condemned earlier, would condemn 0 packs" g.out \
        || fail "$enc: gc --dry-run: $(cat g.out)"

    # --- stats agree with the list and the store ---------------------------------
    "$V" --repo "$R" stats --json > st.json || fail "$enc: stats --json"
    python3 - st.json "$(n_snapshots "$R")" "$(n_data "$R")" <<'PY' || fail "$enc: stats: $(cat st.json)"
import json, sys
st, nsnap, npacks = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
assert st["snapshots"] == nsnap == 3, (st, nsnap)
assert st["packs"] == npacks, (st, npacks)
assert st["blobs"] == st["data_blobs"] + st["meta_blobs"] and st["data_blobs"] > 0
assert 0 < st["stored_bytes"] <= st["pack_bytes"]
# the newest web and db snapshots reference four 4 MiB chunks each (two are
# holes), cal's one
assert st["logical_bytes"] == (2 * 4 + 1) * 4 * 2**20, st
assert abs(st["dedup_ratio"] - st["logical_bytes"] / st["plain_bytes"]) < 1e-9, st
PY
    "$V" --repo "$R" stats > st.out || fail "$enc: stats"
    grep -q "^snapshots: *3$" st.out && grep -q "^deduplication: " st.out || fail "$enc: stats: $(cat st.out)"
    ok "$enc: prune, forget, gc and stats"
done

# --- usage on version 2 -----------------------------------------------------------------
R="$T/v2-none"
expect_fail "at least one --keep" "$V" --repo "$R" prune
expect_fail "wants a non-negative number" "$V" --repo "$R" prune --keep-last lots
expect_fail "usage: vbackupctl forget" "$V" --repo "$R" forget
rc=0; "$V" --repo "$V1" prune --keep-last 1 --password-file pw > out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "are for format 2 repositories" out || fail "prune --password-file on v1: $(cat out)"
ok "version 2: forget, prune, gc, stats"
