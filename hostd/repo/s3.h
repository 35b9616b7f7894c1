/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The pieces of the S3 backend (store-s3.c), one concern per file:
 *
 *   s3-url.c     locations, endpoints, URI encoding, request targets, dates
 *   s3-sigv4.c   AWS Signature Version 4 (canonical request, signing key)
 *   s3-xml.c     a small, bounded XML reader (no DTD, no entities beyond
 *                the five predefined and character references)
 *   s3-msg.c     S3's documents: ListObjectsV2, errors, multipart uploads
 *   s3-config.c  options, credentials file, systemd credential, AWS_* variables
 *   s3-http.c    the libcurl multi engine: one I/O thread, many requests in
 *                flight, signing per attempt, retries with backoff
 *
 * Everything but s3-http.c and s3-config.c is a pure function of its
 * arguments, tested in tests/unit/test-repo-s3-parse.c.  Only store-s3.c
 * and these files include this header.
 */
#ifndef VB_REPO_S3_H
#define VB_REPO_S3_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* ---- s3-url.c ------------------------------------------------------------ */

#define VB_S3_BUCKET_MAX   64      /* S3: 3..63 characters */
#define VB_S3_PREFIX_MAX   512

/* "s3://BUCKET" or "s3://BUCKET/PREFIX" (PREFIX without leading or trailing
 * '/', no empty, "." or ".." component, printable ASCII without spaces);
 * prefix is "" or ends with '/'. */
int vb_s3_parse_location(const char *loc, char bucket[VB_S3_BUCKET_MAX],
                         char prefix[VB_S3_PREFIX_MAX], vb_error *e);

struct vb_s3_endpoint {
    bool tls;                /* https */
    char host[256];          /* lowercase name or address ("[::1]" for IPv6) */
    unsigned port;           /* 0: the scheme's default */
};
/* "http[s]://HOST[:PORT][/]"; nothing else (no path, user or query). */
int vb_s3_parse_endpoint(const char *url, struct vb_s3_endpoint *ep, vb_error *e);

/* A bucket name usable as a DNS label for virtual-host addressing. */
bool vb_s3_bucket_dns_ok(const char *bucket);

/* Append s to out URI-encoded as SigV4 wants: unreserved characters
 * (A-Z a-z 0-9 - . _ ~) as they are, '/' as it is when keep_slash, every
 * other byte as %XX (upper-case hex). */
void vb_s3_uri_encode(GString *out, const char *s, bool keep_slash);

/* Host header value ("host" or "host:port") for a bucket. */
void vb_s3_host(const struct vb_s3_endpoint *ep, const char *bucket, bool virtual_host,
                char *out, size_t cap);
/* The canonical (and sent) path of a key ("" key: the bucket itself). */
void vb_s3_path(const char *bucket, const char *key, bool virtual_host, GString *out);

/* A canonical query string from key/value pairs (NULL-terminated list of
 * key, value, key, value...; a NULL value is written "key="): sorted by
 * encoded key, each part URI-encoded. */
void vb_s3_query(GString *out, const char *const *kv);

/* "2009-10-12T17:50:30.000Z" (S3's XML) and "Mon, 12 Oct 2009 17:50:30 GMT"
 * (HTTP, RFC 7231 IMF-fixdate) to nanoseconds; -EINVAL when malformed. */
int vb_s3_parse_iso8601(const char *s, int64_t *ns);
int vb_s3_parse_http_date(const char *s, int64_t *ns);
/* "20130524T000000Z" from a wall-clock time in seconds. */
void vb_s3_amz_date(int64_t sec, char out[17]);

/* ---- s3-sigv4.c ---------------------------------------------------------- */

struct vb_s3_creds {
    char access_key[128];
    char secret_key[128];
    char session_token[2048];    /* "" when none */
};

/* A header to sign and send (name lower-case, value trimmed). */
struct vb_s3_header {
    const char *name;
    const char *value;
};

/*
 * The Authorization header value for a request.  headers must hold every
 * header to be signed, including host, x-amz-date and x-amz-content-sha256;
 * they are sorted here (the array is reordered).  path and query are the
 * canonical ones (vb_s3_path, vb_s3_query).  amz_date: "YYYYMMDDTHHMMSSZ".
 * canonical (may be NULL) receives the canonical request, for tests.
 */
void vb_s3_sign(const struct vb_s3_creds *c, const char *region, const char *method,
                const char *path, const char *query, struct vb_s3_header *headers, size_t n,
                const char *payload_sha256, const char *amz_date, GString *authorization,
                GString *canonical);

#define VB_S3_HEADERS_MAX  12

struct vb_s3_call;
/*
 * The headers to sign and send for call c (s3-http.c's), into hs: host,
 * x-amz-date, x-amz-content-sha256, and as the call asks content-md5,
 * if-none-match, the Object Lock headers, x-amz-acl, range (written into range),
 * x-amz-security-token (session_token "" : none).  Returns how many.
 */
size_t vb_s3_call_headers(const struct vb_s3_call *c, const char *host, const char *date,
                          const char *session_token, char range[64],
                          struct vb_s3_header hs[VB_S3_HEADERS_MAX]);

/* Digests of a payload: lower-case hex SHA-256, base64 MD5, hex MD5. */
void vb_s3_sha256_hex(const void *buf, size_t len, char out[65]);
void vb_s3_md5(const void *buf, size_t len, uint8_t out[16]);

/* ---- s3-xml.c ------------------------------------------------------------ */

struct vb_xml {
    char *name;              /* local name: a namespace prefix is dropped */
    char *text;              /* the decoded text directly inside it ("" if none) */
    struct vb_xml *child;    /* first child element */
    struct vb_xml *next;     /* next sibling */
};

#define VB_XML_MAX_DEPTH   32
#define VB_XML_MAX_NODES   200000

/* Parse a whole document (one root element).  -EBADMSG with why filled on
 * anything malformed or outside the limits: a DOCTYPE, an entity other than
 * the five predefined ones, a character reference to a non-character,
 * unbalanced tags, text outside the root. */
int vb_xml_parse(const char *buf, size_t len, struct vb_xml **root, char *why, size_t whycap);
void vb_xml_free(struct vb_xml *n);
/* The first child of n named name, or NULL. */
const struct vb_xml *vb_xml_child(const struct vb_xml *n, const char *name);
/* Its text, or NULL when there is no such child. */
const char *vb_xml_child_text(const struct vb_xml *n, const char *name);

/* ---- s3-msg.c ------------------------------------------------------------ */

struct vb_s3_entry {
    char *key;
    uint64_t size;
    int64_t mtime_ns;
};

struct vb_s3_list_page {
    GArray *entries;         /* struct vb_s3_entry (keys freed by _clear) */
    bool truncated;
    char *next_token;        /* when truncated */
};

/* A ListObjectsV2 result: every <Contents> needs Key, Size and LastModified;
 * IsTruncated true needs a NextContinuationToken. */
int vb_s3_parse_list(const char *buf, size_t len, struct vb_s3_list_page *p, char *why,
                     size_t whycap);
void vb_s3_list_page_clear(struct vb_s3_list_page *p);

/* An <Error> document: its Code and Message (printable ASCII, cut to fit);
 * -EBADMSG when it is not one. */
int vb_s3_parse_error(const char *buf, size_t len, char *code, size_t codecap, char *msg,
                      size_t msgcap);
/* InitiateMultipartUploadResult: the UploadId. */
int vb_s3_parse_upload_id(const char *buf, size_t len, char *id, size_t cap, char *why,
                          size_t whycap);

struct vb_s3_upload {
    char *key;
    char *upload_id;
    int64_t initiated_ns;
};
/* ListMultipartUploadsResult: uploads (struct vb_s3_upload), the markers
 * for the next page when truncated. */
int vb_s3_parse_uploads(const char *buf, size_t len, GArray *uploads, bool *truncated,
                        char **next_key, char **next_upload, char *why, size_t whycap);
void vb_s3_uploads_free(GArray *uploads);
struct vb_s3_version {
    char *key;
    char version_id[128];
    bool marker;             /* a delete marker (no ETag, no size) */
    char etag[80];           /* without quotes */
    uint64_t size;
};
/* ListVersionsResult: versions and delete markers (struct vb_s3_version) in
 * the document's order (per key, newest first), the markers for the next
 * page when truncated. */
int vb_s3_parse_versions(const char *buf, size_t len, GArray *versions, bool *truncated,
                         char **next_key, char **next_version, char *why, size_t whycap);
void vb_s3_versions_free(GArray *versions);
/* The CompleteMultipartUpload body for parts 1..n with their hex MD5s. */
void vb_s3_complete_xml(GString *out, const char (*etags)[33], unsigned n);
/* The ETag S3 gives a multipart object: hex MD5 of the parts' MD5s, "-n". */
void vb_s3_multipart_etag(const uint8_t (*md5s)[16], unsigned n, char *out, size_t cap);
/* "bytes FIRST-LAST/TOTAL" */
int vb_s3_parse_content_range(const char *s, uint64_t *first, uint64_t *last,
                              uint64_t *total);
/* Printable ASCII copy of s (others as '?'), cut to cap. */
void vb_s3_printable(const char *s, size_t n, char *out, size_t cap);

/* ---- s3-config.c --------------------------------------------------------- */

struct vb_s3_config {
    char bucket[VB_S3_BUCKET_MAX];
    char prefix[VB_S3_PREFIX_MAX];   /* "" or ending with '/' */
    struct vb_s3_endpoint ep;
    char endpoint[300];              /* as given, for messages */
    char region[64];
    bool virtual_host;
    struct vb_s3_creds creds;
    char creds_from[300];            /* where they came from, for messages */
    char ca_file[1024];              /* "" : the system's CAs */
    char resolve[300];               /* "" or HOST:PORT:ADDRESS (curl's --resolve) */
    unsigned connections;            /* requests on the wire at once */
    unsigned attempts;               /* tries per request */
    unsigned timeout_s;              /* no progress for this long: the try failed */
    unsigned backoff_ms;             /* the first retry's delay (doubled each time) */
    uint64_t multipart_threshold;    /* larger puts are multipart uploads */
    uint64_t part_size;
    unsigned lock_days;              /* object_lock: retention of each put, 0: none */
    bool lock_compliance;            /* COMPLIANCE, else GOVERNANCE */
};

#define VB_S3_LOCK_DAYS_MAX  36500

/* object_lock=DAYS[,governance|compliance] (governance when left out):
 * days from 1 to VB_S3_LOCK_DAYS_MAX. */
int vb_s3_parse_object_lock(const char *v, unsigned *days, bool *compliance, vb_error *e);
/* x-amz-object-lock-retain-until-date for a put at now_s (wall clock,
 * seconds) kept for days: "2026-12-09T16:13:00Z", rounded up to the next
 * whole minute. */
void vb_s3_lock_until(int64_t now_s, unsigned days, char out[32]);

/*
 * The configuration of s3://BUCKET/PREFIX from opts ("key=value", NULL
 * terminated; may be NULL) and the environment.  Keys: endpoint, region,
 * addressing (path, virtual, auto), credentials_file, profile, credential
 * (a systemd credential: $CREDENTIALS_DIRECTORY/NAME), ca_file, resolve,
 * connections, attempts, timeout (seconds), backoff_ms,
 * multipart_threshold, part_size (sizes as vb_parse_size), object_lock
 * (DAYS[,governance|compliance]).  Unknown keys
 * are refused.  Credentials: credentials_file or credential, else
 * AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else
 * AWS_SHARED_CREDENTIALS_FILE; endpoint: the option, else
 * AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS's for the region;
 * region: the option, else AWS_REGION, AWS_DEFAULT_REGION, "us-east-1".
 */
int vb_s3_config_load(const char *location, const char *const *opts, struct vb_s3_config *c,
                      vb_error *e);
/* Forget the secrets. */
void vb_s3_config_wipe(struct vb_s3_config *c);

/* ---- s3-http.c ----------------------------------------------------------- */

struct vb_s3_http;
struct vb_s3_call;
typedef void (*vb_s3_call_fn)(struct vb_s3_call *c);

#define VB_S3_BODY_MAX   (8 * 1024 * 1024)     /* an XML response or error body */

/*
 * One HTTP exchange, tried up to config.attempts times.  The submitter
 * fills the request part; the engine signs each try afresh.
 */
struct vb_s3_call {
    /* request (unchanged until done) */
    const char *method;              /* GET PUT HEAD POST DELETE */
    char *key;                       /* the whole key (prefix + name); "" for the bucket */
    char *query;                     /* canonical query string, or NULL */
    const uint8_t *body;             /* PUT, POST */
    size_t body_len;
    char payload_sha256[65];         /* of body; set by vb_s3_call_body */
    char content_md5[25];            /* base64, "" for none */
    bool if_none_match;              /* If-None-Match: * */
    const char *lock_mode;           /* x-amz-object-lock-mode (GOVERNANCE, COMPLIANCE) or NULL */
    char lock_until[32];             /* x-amz-object-lock-retain-until-date with lock_mode */
    bool bucket_lock;                /* x-amz-bucket-object-lock-enabled: true (create bucket) */
    bool owner_acl;                  /* x-amz-acl: bucket-owner-full-control (an object put) */
    bool range;                      /* GET bytes off .. off+len-1 into out */
    uint64_t off;
    size_t len;
    uint8_t *out;
    bool want_body;                  /* keep a 2xx body (XML) in resp */
    /* response of the last try */
    long status;                     /* 0: no answer */
    GByteArray *resp;                /* body kept (want_body, or a non-2xx answer) */
    char etag[80];                   /* without quotes */
    char version_id[128];            /* x-amz-version-id ("" : none) */
    bool have_length;
    uint64_t length;                 /* Content-Length */
    bool have_mtime;
    int64_t mtime_ns;                /* Last-Modified */
    char content_range[96];
    uint64_t got;                    /* body bytes of a 2xx answer received */
    char s3_code[64];                /* <Error><Code> of a non-2xx answer */
    char s3_msg[200];
    unsigned tries;
    int ret;                         /* 0: an answer (see status); else what failed */
    vb_error err;
    /* completion, on the engine's thread; it may submit further calls */
    vb_s3_call_fn done;
    void *opaque;
    /* engine */
    void *priv;
};

int vb_s3_http_new(const struct vb_s3_config *cfg, struct vb_s3_http **out, vb_error *e);
/* Every call must have completed. */
void vb_s3_http_free(struct vb_s3_http *h);
/* A call for method on key (copied); query may be NULL. */
struct vb_s3_call *vb_s3_call_new(const char *method, const char *key, const char *query);
void vb_s3_call_free(struct vb_s3_call *c);
/* Set the body, its SHA-256 (computed when sha256 is NULL) and its
 * Content-MD5 (none when md5 is NULL). */
void vb_s3_call_body(struct vb_s3_call *c, const void *buf, size_t len, const uint8_t *md5,
                     const char *sha256);
/* Start c; c->done is called exactly once. */
void vb_s3_submit(struct vb_s3_http *h, struct vb_s3_call *c);
/* Start c and wait for it (never from the engine's thread). */
void vb_s3_run(struct vb_s3_http *h, struct vb_s3_call *c);
/* "S3 PUT KEY: 403 AccessDenied: message" or the transport error, for
 * messages (never a secret). */
void vb_s3_call_describe(const struct vb_s3_call *c, char *buf, size_t cap);
/* Requests retried, for tests and the bench. */
uint64_t vb_s3_http_retries(struct vb_s3_http *h);

#endif
