/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Writer leases, condemned lists and the maintenance lock (lease.h). */
#include "lease.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define OWNER_MAX       (64 * 1024)            /* a lease or the lock */
#define CONDEMNED_MAX   (256 * 1024 * 1024)    /* a condemned list: ~4 million packs */

int64_t vb_lease_mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int random_bytes(uint8_t *out, size_t n, vb_error *e)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return vb_seterr(e, -errno, "getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    return 0;
}

/* b - a for a <= b, saturating at INT64_MAX; 0 when b < a */
static int64_t elapsed(int64_t a, int64_t b)
{
    uint64_t d;

    if (b <= a)
        return 0;
    d = (uint64_t)b - (uint64_t)a;
    return d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
}

bool vb_lease_live(int64_t mtime_ns, int64_t store_now_ns, int64_t expiry_ns)
{
    if (mtime_ns >= store_now_ns)
        return true;
    return elapsed(mtime_ns, store_now_ns) < expiry_ns;
}

bool vb_lease_safe(const struct vb_lease *l, int64_t mono_now_ns, int64_t expiry_ns,
                   int64_t margin_ns)
{
    if (margin_ns < 0 || expiry_ns <= margin_ns)
        return false;
    return elapsed(l->mono_ns, mono_now_ns) < expiry_ns - margin_ns;
}

static bool kind_valid(const char *kind)
{
    size_t n = 0;

    for (; kind[n]; n++)
        if (!((kind[n] >= 'a' && kind[n] <= 'z') || (kind[n] >= '0' && kind[n] <= '9') ||
              kind[n] == '-'))
            return false;
    return n >= 1 && n < 32;
}

/* ---- reading small objects that may be replaced while read ------------------ */

/*
 * Read all of name (at most max bytes) into buf with its stat.  The lock and
 * condemned lists are replaced by re-puts: a read that straddles one (the
 * size or mtime changed between the stat before and after) is retried.
 */
static int read_object(struct vb_store *s, const char *name, size_t max, GByteArray *buf,
                       struct vb_obj_info *info, vb_error *e)
{
    for (int tries = 0;; tries++) {
        struct vb_obj_info a, b;
        int ret = vb_store_stat(s, name, &a, e), ret2;

        if (ret)
            return ret;
        if (a.size > max)
            return vb_seterr(e, -EBADMSG, "%s: damaged (%llu bytes, more than %zu)", name,
                             (unsigned long long)a.size, max);
        ret = vb_store_get(s, name, 0, (size_t)a.size, buf, e);
        if (ret && ret != -EIO && ret != -ENOENT && ret != -EAGAIN)
            return ret;
        ret2 = vb_store_stat(s, name, &b, e);
        if (ret2 == -ENOENT || (ret == -ENOENT && !ret2 && tries >= 4))
            return vb_seterr(e, -ENOENT, "get %s: no such object", name);
        if (ret2)
            return ret2;
        if (!ret && !ret2 && a.size == b.size && a.mtime_ns == b.mtime_ns) {
            *info = a;
            return 0;
        }
        if (tries >= 4)
            return ret ? ret : vb_seterr(e, -EAGAIN, "get %s: replaced again and again while "
                                         "being read", name);
    }
}

static int parse_json(const GByteArray *buf, const char *name, struct json_object **out,
                      vb_error *e)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o;
    size_t end;

    *out = NULL;
    if (!tok)
        return vb_seterr(e, -ENOMEM, "%s: out of memory", name);
    o = json_tokener_parse_ex(tok, (const char *)buf->data, (int)buf->len);
    if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        const char *why = json_tokener_error_desc(json_tokener_get_error(tok));
        json_tokener_free(tok);
        json_object_put(o);
        return vb_seterr(e, -EBADMSG, "%s: damaged (not JSON: %s)", name,
                         buf->len ? why : "empty");
    }
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    for (; end < buf->len; end++) {
        if (!strchr(" \t\r\n", buf->data[end])) {
            json_object_put(o);
            return vb_seterr(e, -EBADMSG, "%s: damaged (bytes after the JSON)", name);
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return vb_seterr(e, -EBADMSG, "%s: damaged (not a JSON object)", name);
    }
    *out = o;
    return 0;
}

static int field(struct json_object *o, const char *name, const char *key, enum json_type t,
                 struct json_object **v, vb_error *e)
{
    static const char *const tn[] = { [json_type_null] = "null",
                                      [json_type_boolean] = "a boolean",
                                      [json_type_double] = "a number",
                                      [json_type_int] = "an integer",
                                      [json_type_object] = "an object",
                                      [json_type_array] = "an array",
                                      [json_type_string] = "a string" };

    if (!json_object_object_get_ex(o, key, v))
        return vb_seterr(e, -EBADMSG, "%s: damaged (no field '%s')", name, key);
    if (!json_object_is_type(*v, t))
        return vb_seterr(e, -EBADMSG, "%s: damaged (field '%s' is %s, not %s)", name, key,
                         tn[json_object_get_type(*v)], tn[t]);
    return 0;
}

/* A string field copied into out (cap bytes), non-printable bytes as '?'. */
static int field_str(struct json_object *o, const char *name, const char *key, char *out,
                     size_t cap, vb_error *e)
{
    struct json_object *v;
    const char *str;
    int ret = field(o, name, key, json_type_string, &v, e);
    size_t n;

    if (ret)
        return ret;
    str = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (n >= cap || strlen(str) != n)
        return vb_seterr(e, -EBADMSG, "%s: damaged (field '%s' is too long or holds NUL)",
                         name, key);
    for (size_t i = 0; i <= n; i++)
        out[i] = i < n && ((unsigned char)str[i] < 0x20 || (unsigned char)str[i] >= 0x7f)
                 ? '?' : str[i];
    return 0;
}

static int field_int(struct json_object *o, const char *name, const char *key, int64_t min,
                     int64_t *out, vb_error *e)
{
    struct json_object *v;
    int ret = field(o, name, key, json_type_int, &v, e);

    if (ret)
        return ret;
    errno = 0;
    *out = json_object_get_int64(v);
    if (errno || *out < min)
        return vb_seterr(e, -EBADMSG, "%s: damaged (field '%s' out of range)", name, key);
    return 0;
}

static int field_time(struct json_object *o, const char *name, const char *key, int64_t *ns,
                      vb_error *e)
{
    char buf[64];
    int ret = field_str(o, name, key, buf, sizeof(buf), e);

    if (!ret && vb_parse_time(buf, ns))
        ret = vb_seterr(e, -EBADMSG, "%s: damaged (field '%s' is not an RFC 3339 time)",
                        name, key);
    return ret;
}

/* ---- owners: the content of a lease and of the lock ------------------------- */

static char *owner_json(const char *kind, int64_t created_ns, const char *token,
                        int64_t expiry_ns, vb_error *e)
{
    struct json_object *o = json_object_new_object();
    char host[256] = "", created[64];
    char *out;

    if (!o) {
        vb_seterr(e, -ENOMEM, "out of memory");
        return NULL;
    }
    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "unknown");
    vb_fmt_time(created_ns, created, sizeof(created));
    json_object_object_add(o, "host", json_object_new_string(host));
    json_object_object_add(o, "pid", json_object_new_int64(getpid()));
    json_object_object_add(o, "kind", json_object_new_string(kind));
    json_object_object_add(o, "created", json_object_new_string(created));
    if (token) {
        json_object_object_add(o, "token", json_object_new_string(token));
        json_object_object_add(o, "expiry_s",
                               json_object_new_int64((expiry_ns + 999999999) / 1000000000));
    }
    out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    if (!out)
        vb_seterr(e, -ENOMEM, "out of memory");
    return out;
}

/* Read a lease or the lock: its owner, and for the lock token and expiry. */
static int read_owner(struct vb_store *s, const char *name, struct vb_lease_owner *o,
                      char *token, int64_t *expiry_ns, struct vb_obj_info *info, vb_error *e)
{
    GByteArray *buf = g_byte_array_new();
    struct json_object *j = NULL;
    struct vb_obj_info dummy;
    int ret;

    ret = read_object(s, name, OWNER_MAX, buf, info ? info : &dummy, e);
    if (!ret)
        ret = parse_json(buf, name, &j, e);
    if (!ret)
        ret = field_str(j, name, "host", o->host, sizeof(o->host), e);
    if (!ret)
        ret = field_int(j, name, "pid", 1, &o->pid, e);
    if (!ret)
        ret = field_str(j, name, "kind", o->kind, sizeof(o->kind), e);
    if (!ret)
        ret = field_time(j, name, "created", &o->created_ns, e);
    if (!ret && token) {
        char t[64];
        uint8_t raw[16];
        ret = field_str(j, name, "token", t, sizeof(t), e);
        if (!ret && vb_unhex(t, raw, sizeof(raw)))
            ret = vb_seterr(e, -EBADMSG, "%s: damaged (field 'token' is not 32 hex digits)",
                            name);
        if (!ret)
            memcpy(token, t, 33);
    }
    if (!ret && expiry_ns) {
        int64_t sec;
        ret = field_int(j, name, "expiry_s", 1, &sec, e);
        if (!ret && sec > INT64_MAX / 1000000000)
            ret = vb_seterr(e, -EBADMSG, "%s: damaged (field 'expiry_s' out of range)", name);
        if (!ret)
            *expiry_ns = sec * 1000000000;
    }
    json_object_put(j);
    g_byte_array_free(buf, TRUE);
    return ret;
}

/* ---- leases ------------------------------------------------------------------ */

/* Put the lease's content (NOREPLACE when new) and read back its mtime. */
static int lease_put(struct vb_store *s, struct vb_lease *l, bool create, vb_error *e)
{
    char *json = owner_json(l->kind, l->created_ns, NULL, 0, e);
    struct vb_obj_info info;
    unsigned flags = 0;
    int64_t mono = vb_lease_mono_now();
    int ret;

    if (!json)
        return -ENOMEM;
    if (create && (vb_store_caps(s) & VB_STORE_NOREPLACE))
        flags = VB_PUT_NOREPLACE;
    flags |= VB_PUT_TRANSIENT;
    ret = vb_store_put(s, l->name, json, strlen(json), flags, e);
    free(json);
    if (!ret)
        ret = vb_store_stat(s, l->name, &info, e);
    if (ret)
        return ret;
    l->stamp_ns = info.mtime_ns;
    l->mono_ns = mono;
    return 0;
}

int vb_lease_create(struct vb_store *s, const char *kind, struct vb_lease *l, vb_error *e)
{
    uint8_t id[VB_LEASE_ID_LEN];
    int ret;

    memset(l, 0, sizeof(*l));
    if (!kind_valid(kind))
        return vb_seterr(e, -EINVAL, "create lease: invalid kind '%.40s'", kind);
    ret = random_bytes(id, sizeof(id), e);
    if (ret)
        return ret;
    vb_obj_name(VB_OBJ_LEASE, id, l->name);
    snprintf(l->kind, sizeof(l->kind), "%s", kind);
    l->created_ns = vb_wall_ns();
    ret = lease_put(s, l, true, e);
    if (ret) {
        if (ret != -EEXIST)
            vb_store_remove(s, l->name, NULL);      /* put but not stat'ed */
        vb_prefixerr(e, "create lease");
    }
    return ret;
}

int vb_lease_refresh(struct vb_store *s, struct vb_lease *l, int64_t expiry_ns,
                     int64_t margin_ns, vb_error *e)
{
    struct vb_obj_info info;
    char age[32];
    int ret;

    if (!vb_lease_safe(l, vb_lease_mono_now(), expiry_ns, margin_ns)) {
        vb_fmt_duration((double)elapsed(l->mono_ns, vb_lease_mono_now()) / 1e9, age,
                        sizeof(age));
        return vb_seterr(e, -ESTALE, "refresh lease %s: last refreshed %s ago, it may have "
                         "expired: stop without committing", l->name, age);
    }
    ret = vb_store_stat(s, l->name, &info, e);
    if (ret == -ENOENT)
        return vb_seterr(e, -ESTALE, "refresh lease %s: it is gone (removed as expired?): "
                         "stop without committing", l->name);
    if (!ret)
        ret = lease_put(s, l, false, e);
    if (ret)
        vb_prefixerr(e, "refresh lease");
    return ret;
}

int vb_lease_remove(struct vb_store *s, const struct vb_lease *l, vb_error *e)
{
    return vb_store_remove(s, l->name, e);
}

int vb_lease_read(struct vb_store *s, const char *name, struct vb_lease_owner *o, vb_error *e)
{
    return read_owner(s, name, o, NULL, NULL, NULL, e);
}

static int add_lease(void *opaque, const char *name, const struct vb_obj_info *info,
                     vb_error *e)
{
    struct vb_lease_info li;
    uint8_t id[VB_OBJ_ID_LEN];
    enum vb_obj_kind k;

    if (vb_obj_parse(name, &k, id) || k != VB_OBJ_LEASE)
        return 0;           /* not one of ours */
    memset(&li, 0, sizeof(li));
    snprintf(li.name, sizeof(li.name), "%s", name);
    memcpy(li.id, id, VB_LEASE_ID_LEN);
    li.mtime_ns = info->mtime_ns;
    g_array_append_val((GArray *)opaque, li);
    return 0;
}

int vb_lease_list(struct vb_store *s, GArray **out, vb_error *e)
{
    GArray *a = g_array_new(FALSE, FALSE, sizeof(struct vb_lease_info));
    int ret = vb_store_list(s, vb_obj_prefix(VB_OBJ_LEASE), add_lease, a, e);

    if (ret) {
        g_array_free(a, TRUE);
        *out = NULL;
        return ret;
    }
    *out = a;
    return 0;
}

int vb_lease_store_now(struct vb_store *s, int64_t *now_ns, vb_error *e)
{
    struct vb_lease l;
    int ret = vb_lease_create(s, "clock", &l, e);

    if (ret) {
        vb_prefixerr(e, "read the store's clock");
        return ret;
    }
    *now_ns = l.stamp_ns;
    ret = vb_lease_remove(s, &l, e);
    if (ret)
        vb_prefixerr(e, "read the store's clock");
    return ret;
}

/* ---- condemned lists ------------------------------------------------------------ */

void vb_condemned_free(struct vb_condemned *c)
{
    if (!c)
        return;
    if (c->packs)
        g_array_free(c->packs, TRUE);
    if (c->leases_seen)
        g_array_free(c->leases_seen, TRUE);
    free(c);
}

static struct vb_condemned *condemned_new(void)
{
    struct vb_condemned *c = calloc(1, sizeof(*c));

    if (c)
        c->packs = g_array_new(FALSE, FALSE, sizeof(struct vb_pack_id));
    return c;
}

/* Hex only: built by hand, without a JSON tree of a million strings. */
static GString *condemned_json(const struct vb_condemned *c)
{
    GString *j = g_string_sized_new(96 + c->packs->len * 68);
    char hex[2 * VB_OBJ_ID_LEN + 1], created[64];

    g_string_append(j, "{\"packs\":[");
    for (guint i = 0; i < c->packs->len; i++) {
        vb_hex(g_array_index(c->packs, struct vb_pack_id, i).b, VB_OBJ_ID_LEN, hex);
        g_string_append_printf(j, "%s\"%s\"", i ? "," : "", hex);
    }
    g_string_append(j, "],\"leases_seen\":");
    if (!c->leases_seen) {
        g_string_append(j, "null");
    } else {
        g_string_append_c(j, '[');
        for (guint i = 0; i < c->leases_seen->len; i++) {
            vb_hex(g_array_index(c->leases_seen, struct vb_lease_id, i).b, VB_LEASE_ID_LEN,
                   hex);
            g_string_append_printf(j, "%s\"%s\"", i ? "," : "", hex);
        }
        g_string_append_c(j, ']');
    }
    vb_fmt_time(c->created_ns, created, sizeof(created));
    g_string_append_printf(j, ",\"created\":\"%s\"}", created);
    return j;
}

static int condemned_put(struct vb_store *s, const struct vb_condemned *c, unsigned flags,
                         vb_error *e)
{
    GString *j = condemned_json(c);
    int ret = vb_store_put(s, c->name, j->str, j->len, flags | VB_PUT_TRANSIENT, e);

    g_string_free(j, TRUE);
    return ret;
}

int vb_condemn(struct vb_store *s, const struct vb_pack_id *packs, size_t n,
               struct vb_condemned **out, vb_error *e)
{
    struct vb_condemned *c = condemned_new();
    uint8_t id[VB_LEASE_ID_LEN];
    struct vb_obj_info info;
    GArray *leases = NULL;
    unsigned flags = vb_store_caps(s) & VB_STORE_NOREPLACE ? VB_PUT_NOREPLACE : 0;
    int ret;

    *out = NULL;
    if (!c)
        return vb_seterr(e, -ENOMEM, "condemn packs: out of memory");
    ret = random_bytes(id, sizeof(id), e);
    if (ret)
        goto fail;
    vb_obj_name(VB_OBJ_CONDEMNED, id, c->name);
    g_array_append_vals(c->packs, packs, (guint)n);
    c->created_ns = vb_wall_ns();
    /* 1. the list is visible ... */
    ret = condemned_put(s, c, flags, e);
    if (ret)
        goto fail;
    /* 2. ... before the leases are read */
    ret = vb_lease_list(s, &leases, e);
    if (ret)
        goto fail_put;
    c->leases_seen = g_array_new(FALSE, FALSE, sizeof(struct vb_lease_id));
    for (guint i = 0; i < leases->len; i++)
        g_array_append_vals(c->leases_seen, g_array_index(leases, struct vb_lease_info, i).id,
                            1);
    g_array_free(leases, TRUE);
    /* 3. and then names them */
    ret = condemned_put(s, c, 0, e);
    if (!ret)
        ret = vb_store_stat(s, c->name, &info, e);
    if (ret)
        goto fail_put;
    c->mtime_ns = info.mtime_ns;
    *out = c;
    return 0;
fail_put:
    vb_store_remove(s, c->name, NULL);
fail:
    vb_prefixerr(e, "condemn %zu packs", n);
    vb_condemned_free(c);
    return ret;
}

static int parse_ids(struct json_object *a, const char *name, const char *key, size_t idlen,
                     GArray *out, vb_error *e)
{
    size_t n = json_object_array_length(a);

    for (size_t i = 0; i < n; i++) {
        struct json_object *v = json_object_array_get_idx(a, i);
        uint8_t id[VB_OBJ_ID_LEN];

        if (!json_object_is_type(v, json_type_string) ||
            (size_t)json_object_get_string_len(v) != 2 * idlen ||
            vb_unhex(json_object_get_string(v), id, idlen))
            return vb_seterr(e, -EBADMSG, "%s: damaged ('%s' entry %zu is not %zu hex digits)",
                             name, key, i, 2 * idlen);
        g_array_append_vals(out, id, 1);
    }
    return 0;
}

static int condemned_read(struct vb_store *s, const char *name, struct vb_condemned **out,
                          vb_error *e)
{
    struct vb_condemned *c = condemned_new();
    GByteArray *buf = g_byte_array_new();
    struct json_object *j = NULL, *v;
    struct vb_obj_info info;
    int ret;

    if (!c) {
        g_byte_array_free(buf, TRUE);
        return vb_seterr(e, -ENOMEM, "%s: out of memory", name);
    }
    snprintf(c->name, sizeof(c->name), "%s", name);
    ret = read_object(s, name, CONDEMNED_MAX, buf, &info, e);
    if (!ret)
        ret = parse_json(buf, name, &j, e);
    if (!ret)
        ret = field(j, name, "packs", json_type_array, &v, e);
    if (!ret)
        ret = parse_ids(v, name, "packs", VB_OBJ_ID_LEN, c->packs, e);
    if (!ret && json_object_object_get_ex(j, "leases_seen", &v) &&
        json_object_is_type(v, json_type_null)) {
        /* still being written */
    } else if (!ret) {
        ret = field(j, name, "leases_seen", json_type_array, &v, e);
        if (!ret) {
            c->leases_seen = g_array_new(FALSE, FALSE, sizeof(struct vb_lease_id));
            ret = parse_ids(v, name, "leases_seen", VB_LEASE_ID_LEN, c->leases_seen, e);
        }
    }
    if (!ret)
        ret = field_time(j, name, "created", &c->created_ns, e);
    json_object_put(j);
    g_byte_array_free(buf, TRUE);
    if (ret) {
        vb_condemned_free(c);
        return ret;
    }
    c->mtime_ns = info.mtime_ns;
    *out = c;
    return 0;
}

static int add_condemned_name(void *opaque, const char *name, const struct vb_obj_info *info,
                              vb_error *e)
{
    uint8_t id[VB_OBJ_ID_LEN];
    enum vb_obj_kind k;

    if (!vb_obj_parse(name, &k, id) && k == VB_OBJ_CONDEMNED)
        g_ptr_array_add(opaque, g_strdup(name));
    return 0;
}

int vb_condemned_read_all(struct vb_store *s, GPtrArray **out, vb_error *e)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *all = g_ptr_array_new_with_free_func((GDestroyNotify)vb_condemned_free);
    int ret = vb_store_list(s, vb_obj_prefix(VB_OBJ_CONDEMNED), add_condemned_name, names, e);

    for (guint i = 0; !ret && i < names->len; i++) {
        struct vb_condemned *c = NULL;
        ret = condemned_read(s, names->pdata[i], &c, e);
        if (ret == -ENOENT)
            ret = vb_seterr(e, -EAGAIN, "%s vanished while being read (gc is done with it): "
                            "start again", (char *)names->pdata[i]);
        if (!ret)
            g_ptr_array_add(all, c);
    }
    g_ptr_array_free(names, TRUE);
    if (ret) {
        g_ptr_array_free(all, TRUE);
        *out = NULL;
        return ret;
    }
    *out = all;
    return 0;
}

int vb_condemned_remove(struct vb_store *s, const struct vb_condemned *c, vb_error *e)
{
    return vb_store_remove(s, c->name, e);
}

bool vb_condemned_may_delete(const struct vb_condemned *c, const struct vb_lease_info *leases,
                             size_t n, int64_t store_now_ns, int64_t expiry_ns,
                             const struct vb_lease_info **blocker)
{
    if (blocker)
        *blocker = NULL;
    if (!c->leases_seen)
        return false;           /* gc had not named the leases yet */
    for (guint i = 0; i < c->leases_seen->len; i++) {
        const uint8_t *id = g_array_index(c->leases_seen, struct vb_lease_id, i).b;
        for (size_t j = 0; j < n; j++) {
            if (memcmp(leases[j].id, id, VB_LEASE_ID_LEN))
                continue;
            if (vb_lease_live(leases[j].mtime_ns, store_now_ns, expiry_ns)) {
                if (blocker)
                    *blocker = &leases[j];
                return false;
            }
        }
    }
    return true;
}

/* ---- the maintenance lock ---------------------------------------------------------- */

static const char *lock_name(char *buf)
{
    vb_obj_name(VB_OBJ_LOCK, NULL, buf);
    return buf;
}

static int lock_put(struct vb_store *s, struct vb_maint_lock *l, unsigned flags, vb_error *e)
{
    char name[VB_OBJ_NAME_MAX], *json = owner_json(l->kind, l->created_ns, l->token,
                                                   l->expiry_ns, e);
    struct vb_obj_info info;
    int64_t mono = vb_lease_mono_now();
    int ret;

    if (!json)
        return -ENOMEM;
    ret = vb_store_put(s, lock_name(name), json, strlen(json), flags | VB_PUT_TRANSIENT, e);
    free(json);
    if (!ret)
        ret = vb_store_stat(s, name, &info, e);
    if (ret)
        return ret;
    l->stamp_ns = info.mtime_ns;
    l->mono_ns = mono;
    return 0;
}

/* Read the lock's holder and how old it is by the store's clock. */
static int lock_holder(struct vb_store *s, struct vb_maint_holder *h, bool with_age,
                       vb_error *e)
{
    char name[VB_OBJ_NAME_MAX];
    struct vb_obj_info info;
    int64_t now;
    int ret;

    memset(h, 0, sizeof(*h));
    ret = read_owner(s, lock_name(name), &h->owner, h->token, &h->expiry_ns, &info, e);
    if (ret || !with_age)
        return ret;
    h->mtime_ns = info.mtime_ns;
    ret = vb_lease_store_now(s, &now, e);
    if (ret)
        return ret;
    h->age_ns = elapsed(h->mtime_ns, now);
    h->stale = !vb_lease_live(h->mtime_ns, now, h->expiry_ns);
    return 0;
}

static void describe_holder(const struct vb_maint_holder *h, char *buf, size_t cap)
{
    char created[64], age[32], exp[32];

    vb_fmt_time(h->owner.created_ns, created, sizeof(created));
    vb_fmt_duration((double)h->age_ns / 1e9, age, sizeof(age));
    vb_fmt_duration((double)h->expiry_ns / 1e9, exp, sizeof(exp));
    snprintf(buf, cap, "%s by host %s pid %lld since %s, last refreshed %s ago (expiry %s)",
             h->owner.kind, h->owner.host, (long long)h->owner.pid, created, age, exp);
}

int vb_maint_lock_take(struct vb_store *s, const char *kind, int64_t expiry_ns,
                       struct vb_maint_lock *l, struct vb_maint_holder *holder, vb_error *e)
{
    struct vb_maint_holder h;
    uint8_t raw[16];
    char desc[512];
    int ret;

    memset(l, 0, sizeof(*l));
    if (!kind_valid(kind) || expiry_ns <= 0)
        return vb_seterr(e, -EINVAL, "take the maintenance lock: invalid kind or expiry");
    if (!(vb_store_caps(s) & VB_STORE_NOREPLACE))
        return vb_seterr(e, -ENOTSUP, "take the maintenance lock: this %s store cannot put "
                         "without replacing", vb_store_kind(s));
    /* a credential that may put but not delete would take the lock and
     * then fail, leaving it behind: ask first */
    ret = vb_store_check_remove(s, e);
    if (ret) {
        vb_prefixerr(e, "take the maintenance lock");
        return ret;
    }
    ret = random_bytes(raw, sizeof(raw), e);
    if (ret)
        return ret;
    vb_hex(raw, sizeof(raw), l->token);
    snprintf(l->kind, sizeof(l->kind), "%s", kind);
    l->created_ns = vb_wall_ns();
    l->expiry_ns = expiry_ns;
    for (int tries = 0;; tries++) {
        ret = lock_put(s, l, VB_PUT_NOREPLACE, e);
        if (ret != -EEXIST) {
            if (ret)
                vb_prefixerr(e, "take the maintenance lock");
            return ret;
        }
        ret = lock_holder(s, &h, true, e);
        if (ret == -ENOENT && tries < 3)
            continue;       /* released meanwhile */
        if (ret) {
            vb_prefixerr(e, "take the maintenance lock: it is held, and reading it failed");
            return ret;
        }
        if (holder)
            *holder = h;
        describe_holder(&h, desc, sizeof(desc));
        if (h.stale)
            return vb_seterr(e, -ESTALE, "the repository's maintenance lock is stale: %s; if "
                             "that process is gone, break the lock (token %s)", desc, h.token);
        return vb_seterr(e, -EBUSY, "repository maintenance is running: %s", desc);
    }
}

int vb_maint_lock_refresh(struct vb_store *s, struct vb_maint_lock *l, int64_t margin_ns,
                          vb_error *e)
{
    struct vb_lease held = { .mono_ns = l->mono_ns };
    struct vb_maint_holder h;
    int ret;

    if (!vb_lease_safe(&held, vb_lease_mono_now(), l->expiry_ns, margin_ns))
        return vb_seterr(e, -ESTALE, "refresh the maintenance lock: not refreshed in time, it "
                         "may have been broken: stop");
    ret = lock_holder(s, &h, false, e);
    if (ret == -ENOENT)
        return vb_seterr(e, -ESTALE, "refresh the maintenance lock: it was removed: stop");
    if (!ret && strcmp(h.token, l->token))
        return vb_seterr(e, -ESTALE, "refresh the maintenance lock: it was broken and is now "
                         "held by %s on host %s pid %lld: stop", h.owner.kind, h.owner.host,
                         (long long)h.owner.pid);
    if (!ret)
        ret = lock_put(s, l, 0, e);
    if (ret)
        vb_prefixerr(e, "refresh the maintenance lock");
    return ret;
}

int vb_maint_lock_release(struct vb_store *s, const struct vb_maint_lock *l, vb_error *e)
{
    char name[VB_OBJ_NAME_MAX];
    struct vb_maint_holder h;
    int ret = lock_holder(s, &h, false, e);

    if (ret == -ENOENT)
        return vb_seterr(e, -ESTALE, "release the maintenance lock: it was already removed");
    if (!ret && strcmp(h.token, l->token))
        return vb_seterr(e, -ESTALE, "release the maintenance lock: it was broken and is now "
                         "held by %s on host %s pid %lld", h.owner.kind, h.owner.host,
                         (long long)h.owner.pid);
    if (!ret)
        ret = vb_store_remove(s, lock_name(name), e);
    if (ret)
        vb_prefixerr(e, "release the maintenance lock");
    return ret;
}

int vb_maint_lock_break(struct vb_store *s, const char *token, vb_error *e)
{
    char name[VB_OBJ_NAME_MAX], desc[512];
    struct vb_maint_holder h;
    int ret = lock_holder(s, &h, true, e);

    if (ret == -ENOENT)
        return vb_seterr(e, -ENOENT, "break the maintenance lock: there is none");
    if (ret) {
        vb_prefixerr(e, "break the maintenance lock");
        return ret;
    }
    describe_holder(&h, desc, sizeof(desc));
    if (strcmp(h.token, token))
        return vb_seterr(e, -ESTALE, "break the maintenance lock: it is another one by now "
                         "(%s, token %s)", desc, h.token);
    if (!h.stale)
        return vb_seterr(e, -EBUSY, "break the maintenance lock: it is live (%s)", desc);
    ret = vb_store_remove(s, lock_name(name), e);
    if (ret)
        vb_prefixerr(e, "break the maintenance lock");
    return ret;
}
