/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests: the pure parts of the S3 backend (hostd/repo/s3-*.c):
 * Signature Version 4 against AWS's published examples, URI encoding and
 * canonical queries, locations and endpoints, dates, the object_lock option
 * and the headers it adds, and the XML reader and
 * S3 documents fed hostile input (DTDs, entities, depth, truncation, a
 * mutation loop).
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

static const struct vb_s3_creds aws_example = {
    .access_key = "AKIAIOSFODNN7EXAMPLE",
    .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void check_sig(const char *method, const char *path, const char *query,
                      struct vb_s3_header *h, size_t n, const char *payload, const char *want)
{
    GString *auth = g_string_new(NULL), *canon = g_string_new(NULL);
    char *sig;

    vb_s3_sign(&aws_example, "us-east-1", method, path, query, h, n, payload,
               "20130524T000000Z", auth, canon);
    sig = strstr(auth->str, "Signature=");
    g_assert_nonnull(sig);
    if (strcmp(sig + 10, want))
        g_error("signature %s, want %s; canonical request:\n%s", sig + 10, want, canon->str);
    g_assert_true(g_str_has_prefix(auth->str, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/"
                                   "20130524/us-east-1/s3/aws4_request, SignedHeaders="));
    g_string_free(auth, TRUE);
    g_string_free(canon, TRUE);
}

/* docs.aws.amazon.com, "Signature Calculations for the Authorization
 * Header: Transferring Payload in a Single Chunk", its four examples */
static void test_sigv4(void)
{
    char payload[65];
    GString *path = g_string_new(NULL), *q = g_string_new(NULL);

    /* GET Object, with a range */
    check_sig("GET", "/test.txt", "",
              (struct vb_s3_header[]){ { "x-amz-date", "20130524T000000Z" },
                                       { "range", "bytes=0-9" },
                                       { "host", "examplebucket.s3.amazonaws.com" },
                                       { "x-amz-content-sha256", EMPTY_SHA } }, 4, EMPTY_SHA,
              "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

    /* PUT Object: the key "test$file.text" is URI-encoded */
    vb_s3_sha256_hex("Welcome to Amazon S3.", 21, payload);
    g_assert_cmpstr(payload, ==,
                    "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    vb_s3_path("examplebucket", "test$file.text", true, path);
    g_assert_cmpstr(path->str, ==, "/test%24file.text");
    check_sig("PUT", path->str, "",
              (struct vb_s3_header[]){ { "host", "examplebucket.s3.amazonaws.com" },
                                       { "date", "Fri, 24 May 2013 00:00:00 GMT" },
                                       { "x-amz-date", "20130524T000000Z" },
                                       { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
                                       { "x-amz-content-sha256", payload } }, 5, payload,
              "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");

    /* GET Bucket Lifecycle: a key without a value is "lifecycle=" */
    vb_s3_query(q, (const char *const[]){ "lifecycle", NULL, NULL });
    g_assert_cmpstr(q->str, ==, "lifecycle=");
    check_sig("GET", "/", q->str,
              (struct vb_s3_header[]){ { "host", "examplebucket.s3.amazonaws.com" },
                                       { "x-amz-date", "20130524T000000Z" },
                                       { "x-amz-content-sha256", EMPTY_SHA } }, 3, EMPTY_SHA,
              "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");

    /* Get Bucket (List Objects): the query sorted */
    g_string_truncate(q, 0);
    vb_s3_query(q, (const char *const[]){ "prefix", "J", "max-keys", "2", NULL });
    g_assert_cmpstr(q->str, ==, "max-keys=2&prefix=J");
    check_sig("GET", "/", q->str,
              (struct vb_s3_header[]){ { "host", "examplebucket.s3.amazonaws.com" },
                                       { "x-amz-date", "20130524T000000Z" },
                                       { "x-amz-content-sha256", EMPTY_SHA } }, 3, EMPTY_SHA,
              "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    g_string_free(path, TRUE);
    g_string_free(q, TRUE);
}

static void test_canonical_headers(void)
{
    GString *auth = g_string_new(NULL), *canon = g_string_new(NULL);

    /* values trimmed, inner runs of spaces folded, headers sorted */
    vb_s3_sign(&aws_example, "eu-west-1", "HEAD", "/b/k", "",
               (struct vb_s3_header[]){ { "x-amz-date", "20130524T000000Z" },
                                        { "host", "  h:8080 " },
                                        { "content-md5", "a  b" } }, 3, EMPTY_SHA,
               "20130524T000000Z", auth, canon);
    g_assert_cmpstr(canon->str, ==, "HEAD\n/b/k\n\ncontent-md5:a b\nhost:h:8080\n"
                    "x-amz-date:20130524T000000Z\n\ncontent-md5;host;x-amz-date\n" EMPTY_SHA);
    g_assert_nonnull(strstr(auth->str, "/20130524/eu-west-1/s3/aws4_request"));
    g_assert_null(strstr(auth->str, aws_example.secret_key));
    g_string_free(auth, TRUE);
    g_string_free(canon, TRUE);
}

static void test_uri(void)
{
    GString *s = g_string_new(NULL);

    vb_s3_uri_encode(s, "a-z_0.9~/ +=&?%\xc3\xa9", true);
    g_assert_cmpstr(s->str, ==, "a-z_0.9~/%20%2B%3D%26%3F%25%C3%A9");
    g_string_truncate(s, 0);
    vb_s3_uri_encode(s, "a/b", false);
    g_assert_cmpstr(s->str, ==, "a%2Fb");
    g_string_truncate(s, 0);
    vb_s3_path("bucket", "p/data/ab/x", false, s);
    g_assert_cmpstr(s->str, ==, "/bucket/p/data/ab/x");
    g_string_truncate(s, 0);
    vb_s3_path("bucket", "", false, s);
    g_assert_cmpstr(s->str, ==, "/bucket");
    g_string_truncate(s, 0);
    vb_s3_path("bucket", "", true, s);
    g_assert_cmpstr(s->str, ==, "/");
    g_string_truncate(s, 0);
    /* values encoded, '/' too; keys sorted */
    vb_s3_query(s, (const char *const[]){ "prefix", "p/data/", "list-type", "2",
                                          "continuation-token", "a+b/c=", NULL });
    g_assert_cmpstr(s->str, ==, "continuation-token=a%2Bb%2Fc%3D&list-type=2&"
                    "prefix=p%2Fdata%2F");
    g_string_truncate(s, 0);
    vb_s3_query(s, (const char *const[]){ NULL });
    g_assert_cmpstr(s->str, ==, "");
    g_string_free(s, TRUE);
}

static void test_location(void)
{
    static const char *const bad[] = {
        "s3://", "s3://ab", "s3://-abc/x", "s3://abc-/x", "s3://a b c/x",
        "s3://abc//x", "s3://abc/x//y", "s3://abc/./x", "s3://abc/x/..", "s3://abc/x y",
        "s3://abc/x\n", "s3://abc/x\\y", "S3://abc", "s3:/abc",
        "s3://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    char b[VB_S3_BUCKET_MAX], p[VB_S3_PREFIX_MAX];
    vb_error e = { 0 };

    g_assert_cmpint(vb_s3_parse_location("s3://my-bucket", b, p, &e), ==, 0);
    g_assert_cmpstr(b, ==, "my-bucket");
    g_assert_cmpstr(p, ==, "");
    g_assert_cmpint(vb_s3_parse_location("s3://my.bucket/", b, p, &e), ==, 0);
    g_assert_cmpstr(p, ==, "");
    g_assert_cmpint(vb_s3_parse_location("s3://b_1/host-1/vms", b, p, &e), ==, 0);
    g_assert_cmpstr(b, ==, "b_1");
    g_assert_cmpstr(p, ==, "host-1/vms/");
    g_assert_cmpint(vb_s3_parse_location("s3://abc/x/", b, p, &e), ==, 0);
    g_assert_cmpstr(p, ==, "x/");
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        if (vb_s3_parse_location(bad[i], b, p, &e) != -EINVAL)
            g_error("'%s' was accepted", bad[i]);

    g_assert_true(vb_s3_bucket_dns_ok("my-bucket"));
    g_assert_false(vb_s3_bucket_dns_ok("my.bucket"));
    g_assert_false(vb_s3_bucket_dns_ok("My-Bucket"));
    g_assert_false(vb_s3_bucket_dns_ok("my_bucket"));
}

static void test_endpoint(void)
{
    static const char *const bad[] = {
        "ftp://h", "http://", "http://h/path", "http://h?x", "http://user@h", "http://h:0",
        "http://h:65536", "http://h:x", "http://h:", "http://[::1", "http://[::1]x",
        "http://h h", "https://h:443/x/",
    };
    struct vb_s3_endpoint ep;
    char host[300];

    g_assert_cmpint(vb_s3_parse_endpoint("http://127.0.0.1:7480", &ep, NULL), ==, 0);
    g_assert_false(ep.tls);
    g_assert_cmpstr(ep.host, ==, "127.0.0.1");
    g_assert_cmpuint(ep.port, ==, 7480);
    vb_s3_host(&ep, "b", false, host, sizeof(host));
    g_assert_cmpstr(host, ==, "127.0.0.1:7480");
    g_assert_cmpint(vb_s3_parse_endpoint("HTTPS://S3.Example.COM:443/", &ep, NULL), ==, 0);
    g_assert_true(ep.tls);
    g_assert_cmpstr(ep.host, ==, "s3.example.com");
    g_assert_cmpuint(ep.port, ==, 0);       /* the default is left out of Host */
    vb_s3_host(&ep, "bucket", true, host, sizeof(host));
    g_assert_cmpstr(host, ==, "bucket.s3.example.com");
    g_assert_cmpint(vb_s3_parse_endpoint("http://[::1]:8000", &ep, NULL), ==, 0);
    g_assert_cmpstr(ep.host, ==, "[::1]");
    g_assert_cmpuint(ep.port, ==, 8000);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        if (vb_s3_parse_endpoint(bad[i], &ep, NULL) != -EINVAL)
            g_error("'%s' was accepted", bad[i]);
}

static void test_dates(void)
{
    static const char *const bad_iso[] = {
        "", "2009-10-12T17:50:30", "2009-10-12 17:50:30Z", "2009-13-12T17:50:30Z",
        "2009-02-29T00:00:00Z", "2009-10-12T24:00:00Z", "2009-10-12T17:50:30.Z",
        "2009-10-12T17:50:30.000+01:00", "1969-12-31T23:59:59Z", "2009-10-12T17:50:30Zx",
    };
    static const char *const bad_http[] = {
        "", "Mon, 12 Oct 2009 17:50:30 UTC", "Mon 12 Oct 2009 17:50:30 GMT",
        "Mon, 12 Foo 2009 17:50:30 GMT", "Xyz, 12 Oct 2009 17:50:30 GMT",
        "Mon, 32 Oct 2009 17:50:30 GMT", "Mon, 12 Oct 2009 17:50:30 GMT ",
    };
    int64_t ns;
    char d[17];

    g_assert_cmpint(vb_s3_parse_iso8601("2009-10-12T17:50:30.000Z", &ns), ==, 0);
    g_assert_cmpint(ns, ==, INT64_C(1255369830) * 1000000000);
    g_assert_cmpint(vb_s3_parse_iso8601("2009-10-12T17:50:30.123456789Z", &ns), ==, 0);
    g_assert_cmpint(ns, ==, INT64_C(1255369830123456789));
    g_assert_cmpint(vb_s3_parse_iso8601("2024-02-29T00:00:00Z", &ns), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(bad_iso); i++)
        if (vb_s3_parse_iso8601(bad_iso[i], &ns) != -EINVAL)
            g_error("'%s' was accepted", bad_iso[i]);
    g_assert_cmpint(vb_s3_parse_http_date("Mon, 12 Oct 2009 17:50:30 GMT", &ns), ==, 0);
    g_assert_cmpint(ns, ==, INT64_C(1255369830) * 1000000000);
    for (size_t i = 0; i < G_N_ELEMENTS(bad_http); i++)
        if (vb_s3_parse_http_date(bad_http[i], &ns) != -EINVAL)
            g_error("'%s' was accepted", bad_http[i]);
    vb_s3_amz_date(1369353600, d);
    g_assert_cmpstr(d, ==, "20130524T000000Z");
}

/* object_lock=DAYS[,governance|compliance], its retain-until date, and the
 * headers a locked put and a bucket made with Object Lock sign and send */
static void test_object_lock(void)
{
    static const char *const bad[] = {
        "", "0", "-1", "+1", " 1", "1 ", "1,", "1,GOVERNANCE", "1,legal", "36501", "7x",
        "99999999999999999999", ",governance", "1,governance,", "1,compliance ", "0x10",
    };
    struct vb_s3_header hs[VB_S3_HEADERS_MAX];
    struct vb_s3_call *c;
    GString *auth = g_string_new(NULL), *canon = g_string_new(NULL);
    unsigned days = 0;
    bool comp = true;
    char until[32], range[64];
    size_t n;
    vb_error e = { 0 };

    g_assert_cmpint(vb_s3_parse_object_lock("7", &days, &comp, &e), ==, 0);
    g_assert_cmpuint(days, ==, 7);
    g_assert_false(comp);
    g_assert_cmpint(vb_s3_parse_object_lock("30,compliance", &days, &comp, &e), ==, 0);
    g_assert_cmpuint(days, ==, 30);
    g_assert_true(comp);
    g_assert_cmpint(vb_s3_parse_object_lock("36500,governance", &days, &comp, &e), ==, 0);
    g_assert_cmpuint(days, ==, 36500);
    g_assert_false(comp);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        if (vb_s3_parse_object_lock(bad[i], &days, &comp, &e) != -EINVAL)
            g_error("object_lock=%s was accepted", bad[i]);
        g_assert_nonnull(strstr(e.msg, "DAYS[,governance|compliance]"));
    }

    /* 2013-05-24T00:00:00Z + 7 days; a second past a minute rounds up */
    vb_s3_lock_until(1369353600, 7, until);
    g_assert_cmpstr(until, ==, "2013-05-31T00:00:00Z");
    vb_s3_lock_until(1369353601, 1, until);
    g_assert_cmpstr(until, ==, "2013-05-25T00:01:00Z");
    vb_s3_lock_until(1369353659, 36500, until);
    g_assert_cmpstr(until, ==, "2113-04-30T00:01:00Z");

    /* a locked put: Content-MD5 and both lock headers, all signed */
    c = vb_s3_call_new("PUT", "p/data/ab/abcd", NULL);
    vb_s3_call_body(c, "x", 1, (const uint8_t *)"0123456789abcdef", NULL);
    c->if_none_match = true;
    c->lock_mode = "GOVERNANCE";
    c->owner_acl = true;
    snprintf(c->lock_until, sizeof(c->lock_until), "2013-05-31T00:00:00Z");
    n = vb_s3_call_headers(c, "h:80", "20130524T000000Z", "", range, hs);
    g_assert_cmpuint(n, ==, 8);
    vb_s3_sign(&aws_example, "us-east-1", "PUT", "/b/p/data/ab/abcd", "", hs, n,
               c->payload_sha256, "20130524T000000Z", auth, canon);
    g_assert_nonnull(strstr(canon->str, "\nx-amz-object-lock-mode:GOVERNANCE\n"
                            "x-amz-object-lock-retain-until-date:2013-05-31T00:00:00Z\n"));
    g_assert_nonnull(strstr(auth->str, "SignedHeaders=content-md5;host;if-none-match;"
                            "x-amz-acl;x-amz-content-sha256;x-amz-date;"
                            "x-amz-object-lock-mode;x-amz-object-lock-retain-until-date,"));
    g_assert_nonnull(strstr(canon->str, "\nx-amz-acl:bucket-owner-full-control\n"));
    vb_s3_call_free(c);

    /* an unlocked one has neither; a bucket made with Object Lock says so */
    c = vb_s3_call_new("PUT", "p/leases/ab", NULL);
    vb_s3_call_body(c, "x", 1, (const uint8_t *)"0123456789abcdef", NULL);
    n = vb_s3_call_headers(c, "h:80", "20130524T000000Z", "tok", range, hs);
    g_assert_cmpuint(n, ==, 5);
    for (size_t i = 0; i < n; i++)
        g_assert_false(g_str_has_prefix(hs[i].name, "x-amz-object-lock"));
    g_assert_cmpstr(hs[4].name, ==, "x-amz-security-token");
    vb_s3_call_free(c);
    c = vb_s3_call_new("PUT", "", NULL);
    c->bucket_lock = true;
    n = vb_s3_call_headers(c, "h:80", "20130524T000000Z", "", range, hs);
    g_assert_cmpuint(n, ==, 4);
    g_assert_cmpstr(hs[3].name, ==, "x-amz-bucket-object-lock-enabled");
    g_assert_cmpstr(hs[3].value, ==, "true");
    vb_s3_call_free(c);
    g_string_free(auth, TRUE);
    g_string_free(canon, TRUE);
}

static int parse(const char *doc, struct vb_xml **root, char *why)
{
    return vb_xml_parse(doc, strlen(doc), root, why, 200);
}

static void test_xml(void)
{
    static const struct {
        const char *doc, *why;
    } bad[] = {
        { "", "no root element" },
        { "text", "no root element" },
        { "<a>", "unexpected end" },
        { "<a></b>", "does not match" },
        { "<a><b></a></b>", "does not match" },
        { "<a></a><b></b>", "content after the root" },
        { "<a></a>x", "content after the root" },
        { "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "DTD" },
        { "<a><!ENTITY x \"y\"></a>", "DTD" },
        { "<a>&x;</a>", "unknown entity" },
        { "<a>&amp</a>", "unknown entity" },
        { "<a>&#0;</a>", "does not allow" },
        { "<a>&#xD800;</a>", "does not allow" },
        { "<a>&#x110000;</a>", "does not allow" },
        { "<a>&#xFFFFFFFFF;</a>", "malformed character reference" },
        { "<a>&#;</a>", "malformed character reference" },
        { "<a>\x01</a>", "control character" },
        { "<a b=c></a>", "quoted attribute" },
        { "<a b=\"<\"></a>", "'<' in an attribute" },
        { "<a b=\"x>", "unterminated attribute" },
        { "<a><!-- x </a>", "unterminated comment" },
        { "<a><![CDATA[x</a>", "unterminated CDATA" },
        { "<a>< b></a>", "malformed markup" },
        { "<1a></1a>", "no root element" },
        { "</a>", "no root element" },
    };
    struct vb_xml *root;
    GString *deep = g_string_new(NULL);
    char why[200];

    g_assert_cmpint(parse("\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->"
                          "<s3:R xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                          "<K a='1'>x &lt;&gt;&amp;&quot;&apos; &#65;&#x42;&#xe9;</K>"
                          "<E/><C><![CDATA[<not markup>]]></C><K>second</K></s3:R>\n<?pi?>",
                          &root, why), ==, 0);
    g_assert_cmpstr(root->name, ==, "R");
    g_assert_cmpstr(vb_xml_child_text(root, "K"), ==, "x <>&\"' AB\xc3\xa9");
    g_assert_cmpstr(vb_xml_child_text(root, "E"), ==, "");
    g_assert_cmpstr(vb_xml_child_text(root, "C"), ==, "<not markup>");
    g_assert_null(vb_xml_child_text(root, "missing"));
    g_assert_cmpstr(root->child->next->next->next->text, ==, "second");
    vb_xml_free(root);
    g_assert_cmpint(parse("<a/>", &root, why), ==, 0);
    vb_xml_free(root);

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        if (parse(bad[i].doc, &root, why) != -EBADMSG || !strstr(why, bad[i].why))
            g_error("case %zu '%s': '%s', want '%s'", i, bad[i].doc, why, bad[i].why);
        g_assert_null(root);
    }
    /* nesting: 32 levels are fine, 33 are not */
    for (int i = 0; i < 32; i++)
        g_string_append(deep, "<a>");
    for (int i = 0; i < 32; i++)
        g_string_append(deep, "</a>");
    g_assert_cmpint(parse(deep->str, &root, why), ==, 0);
    vb_xml_free(root);
    g_string_prepend(deep, "<b>");
    g_string_append(deep, "</b>");
    g_assert_cmpint(parse(deep->str, &root, why), ==, -EBADMSG);
    g_assert_nonnull(strstr(why, "nested too deeply"));
    /* too many elements */
    g_string_assign(deep, "<a>");
    for (int i = 0; i <= VB_XML_MAX_NODES; i++)
        g_string_append(deep, "<b/>");
    g_string_append(deep, "</a>");
    g_assert_cmpint(parse(deep->str, &root, why), ==, -EBADMSG);
    g_assert_nonnull(strstr(why, "too many elements"));
    g_string_free(deep, TRUE);
}

#define LIST_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult " \
    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>p/</Prefix>" \
    "<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>"
#define ENTRY(k, s) "<Contents><Key>" k "</Key><LastModified>2024-01-02T03:04:05.678Z" \
    "</LastModified><ETag>&quot;abc&quot;</ETag><Size>" s "</Size><StorageClass>STANDARD" \
    "</StorageClass></Contents>"

static const char good_list[] = LIST_HEAD "<IsTruncated>true</IsTruncated>"
    "<NextContinuationToken>tok/+=</NextContinuationToken>"
    ENTRY("p/data/ab/1", "10") ENTRY("p/config", "0") "</ListBucketResult>";

static void test_list(void)
{
    static const struct {
        const char *doc, *why;
    } bad[] = {
        { LIST_HEAD "</ListBucketResult>", "IsTruncated" },
        { LIST_HEAD "<IsTruncated>yes</IsTruncated></ListBucketResult>", "IsTruncated" },
        { LIST_HEAD "<IsTruncated>true</IsTruncated></ListBucketResult>", "ContinuationToken" },
        { LIST_HEAD "<IsTruncated>false</IsTruncated>" ENTRY("", "1") "</ListBucketResult>",
          "entry 0: no valid Key" },
        { LIST_HEAD "<IsTruncated>false</IsTruncated>" ENTRY("k", "-1") "</ListBucketResult>",
          "entry 0: no valid Size" },
        { LIST_HEAD "<IsTruncated>false</IsTruncated>" ENTRY("k", "1") ENTRY("j", "99999999"
          "999999999999") "</ListBucketResult>", "entry 1: no valid Size" },
        { LIST_HEAD "<IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>1</Size>"
          "</Contents></ListBucketResult>", "LastModified" },
        { "<Error><Code>AccessDenied</Code></Error>", "<Error> where <ListBucketResult>" },
    };
    struct vb_s3_list_page p;
    struct vb_s3_entry *en;
    char why[200];

    g_assert_cmpint(vb_s3_parse_list(good_list, strlen(good_list), &p, why, sizeof(why)), ==,
                    0);
    g_assert_true(p.truncated);
    g_assert_cmpstr(p.next_token, ==, "tok/+=");
    g_assert_cmpuint(p.entries->len, ==, 2);
    en = &g_array_index(p.entries, struct vb_s3_entry, 0);
    g_assert_cmpstr(en->key, ==, "p/data/ab/1");
    g_assert_cmpuint(en->size, ==, 10);
    g_assert_cmpint(en->mtime_ns, ==, INT64_C(1704164645678000000));
    vb_s3_list_page_clear(&p);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        if (vb_s3_parse_list(bad[i].doc, strlen(bad[i].doc), &p, why, sizeof(why)) != -EBADMSG ||
            !strstr(why, bad[i].why))
            g_error("case %zu: '%s', want '%s'", i, why, bad[i].why);
        g_assert_null(p.entries);
    }
}

/* Random damage to a valid listing: parsed or refused, never a crash (run
 * under ASan by scripts/check). */
static void test_list_mutations(void)
{
    GRand *r = g_rand_new_with_seed(13);
    size_t n = strlen(good_list);
    char *buf = g_malloc(n + 1), why[200];
    struct vb_s3_list_page p;

    for (int i = 0; i < 20000; i++) {
        size_t len = n;
        int ret;

        memcpy(buf, good_list, n + 1);
        for (int k = g_rand_int_range(r, 1, 4); k > 0; k--)
            buf[g_rand_int_range(r, 0, (gint32)n)] = (char)g_rand_int_range(r, 0, 256);
        if (g_rand_boolean(r))
            len = (size_t)g_rand_int_range(r, 0, (gint32)n);
        ret = vb_s3_parse_list(buf, len, &p, why, sizeof(why));
        g_assert_true(ret == 0 || ret == -EBADMSG);
        if (!ret) {
            g_assert_nonnull(p.entries);
            g_assert_true(!p.truncated || (p.next_token && *p.next_token));
        }
        vb_s3_list_page_clear(&p);
    }
    g_free(buf);
    g_rand_free(r);
}

/* ListVersionsResult as radosgw 16.2 sends it: versions and delete markers
 * in order, paging markers; anything missing is refused */
static void test_versions(void)
{
    static const char ok[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListVersionsResult "
        "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>p/k</Prefix>"
        "<IsTruncated>true</IsTruncated><NextKeyMarker>p/k</NextKeyMarker>"
        "<NextVersionIdMarker>v1</NextVersionIdMarker>"
        "<Version><Key>p/k</Key><VersionId>v3</VersionId><IsLatest>true</IsLatest>"
        "<LastModified>2026-12-02T16:20:01.000Z</LastModified><ETag>&quot;0123abcd&quot;</ETag>"
        "<Size>42</Size></Version>"
        "<DeleteMarker><Key>p/k</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest>"
        "<LastModified>2026-12-02T16:20:00.000Z</LastModified></DeleteMarker>"
        "<Version><Key>p/k2</Key><VersionId>v1</VersionId><ETag>\"ff\"</ETag><Size>0</Size>"
        "</Version></ListVersionsResult>";
    static const char *const bad[] = {
        "<ListVersionsResult><IsTruncated>maybe</IsTruncated></ListVersionsResult>",
        "<ListVersionsResult><IsTruncated>true</IsTruncated></ListVersionsResult>",
        "<ListVersionsResult><IsTruncated>false</IsTruncated><Version><Key>k</Key>"
        "<VersionId>v</VersionId><Size>1</Size></Version></ListVersionsResult>",
        "<ListVersionsResult><IsTruncated>false</IsTruncated><Version><Key>k</Key>"
        "<VersionId>v</VersionId><ETag>e</ETag><Size>-1</Size></Version></ListVersionsResult>",
        "<ListVersionsResult><IsTruncated>false</IsTruncated><DeleteMarker><Key>k</Key>"
        "</DeleteMarker></ListVersionsResult>",
        "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
    };
    GArray *vs = g_array_new(FALSE, TRUE, sizeof(struct vb_s3_version));
    char why[200], *nk, *nv;
    bool trunc;
    const struct vb_s3_version *v;

    g_assert_cmpint(vb_s3_parse_versions(ok, strlen(ok), vs, &trunc, &nk, &nv, why,
                                         sizeof(why)), ==, 0);
    g_assert_true(trunc);
    g_assert_cmpstr(nk, ==, "p/k");
    g_assert_cmpstr(nv, ==, "v1");
    g_assert_cmpuint(vs->len, ==, 3);
    v = &g_array_index(vs, struct vb_s3_version, 0);
    g_assert_true(!strcmp(v->key, "p/k") && !strcmp(v->version_id, "v3") && !v->marker &&
                  !strcmp(v->etag, "0123abcd") && v->size == 42);
    v = &g_array_index(vs, struct vb_s3_version, 1);
    g_assert_true(!strcmp(v->version_id, "v2") && v->marker);
    v = &g_array_index(vs, struct vb_s3_version, 2);
    g_assert_true(!strcmp(v->key, "p/k2") && !strcmp(v->etag, "ff") && v->size == 0);
    vb_s3_versions_free(vs);
    g_free(nk);
    g_free(nv);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        if (vb_s3_parse_versions(bad[i], strlen(bad[i]), vs, &trunc, &nk, &nv, why,
                                 sizeof(why)) != -EBADMSG)
            g_error("accepted: %s", bad[i]);
        g_assert_true(vs->len == 0 && !nk && !nv);
    }
    g_array_free(vs, TRUE);
}

static void test_messages(void)
{
    static const char err[] = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>"
                              "Please \xc3\xa9 reduce</Message><RequestId>x</RequestId></Error>";
    static const char init[] = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                               "<UploadId>2~abc-DEF_1</UploadId></InitiateMultipartUploadResult>";
    static const char uploads[] = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
        "<NextKeyMarker>p/k</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>"
        "<Upload><Key>p/k</Key><UploadId>u1</UploadId><Initiated>2024-01-02T03:04:05.000Z"
        "</Initiated></Upload></ListMultipartUploadsResult>";
    char code[64], msg[64], id[64], why[200], *nk, *nu, etag[48];
    GArray *ups = g_array_new(FALSE, FALSE, sizeof(struct vb_s3_upload));
    uint8_t md5s[2][16];
    GString *x = g_string_new(NULL);
    bool trunc;
    uint64_t a, b, t;

    g_assert_cmpint(vb_s3_parse_error(err, strlen(err), code, sizeof(code), msg, sizeof(msg)), ==,
                    0);
    g_assert_cmpstr(code, ==, "SlowDown");
    g_assert_cmpstr(msg, ==, "Please ?? reduce");
    g_assert_cmpint(vb_s3_parse_error("<Error/>", 8, code, sizeof(code), msg, sizeof(msg)), ==,
                    -EBADMSG);
    g_assert_cmpint(vb_s3_parse_error("", 0, code, sizeof(code), msg, sizeof(msg)), ==, -EBADMSG);

    g_assert_cmpint(vb_s3_parse_upload_id(init, strlen(init), id, sizeof(id), why, sizeof(why)),
                    ==, 0);
    g_assert_cmpstr(id, ==, "2~abc-DEF_1");
    g_assert_cmpint(vb_s3_parse_upload_id("<InitiateMultipartUploadResult><UploadId>a b"
                                          "</UploadId></InitiateMultipartUploadResult>", 77, id,
                                          sizeof(id), why, sizeof(why)), ==, -EBADMSG);

    g_assert_cmpint(vb_s3_parse_uploads(uploads, strlen(uploads), ups, &trunc, &nk, &nu, why,
                                        sizeof(why)), ==, 0);
    g_assert_true(trunc);
    g_assert_cmpstr(nk, ==, "p/k");
    g_assert_cmpstr(nu, ==, "u2");
    g_assert_cmpuint(ups->len, ==, 1);
    g_assert_cmpstr(g_array_index(ups, struct vb_s3_upload, 0).upload_id, ==, "u1");
    g_free(nk);
    g_free(nu);
    vb_s3_uploads_free(ups);
    g_array_free(ups, TRUE);

    vb_s3_complete_xml(x, (const char[][33]){ "0123456789abcdef0123456789abcdef",
                                               "fedcba9876543210fedcba9876543210" }, 2);
    g_assert_cmpstr(x->str, ==, "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                    "<ETag>\"0123456789abcdef0123456789abcdef\"</ETag></Part><Part><PartNumber>2"
                    "</PartNumber><ETag>\"fedcba9876543210fedcba9876543210\"</ETag></Part>"
                    "</CompleteMultipartUpload>");
    g_string_free(x, TRUE);
    /* the multipart ETag: MD5 of the parts' binary MD5s, "-" count */
    vb_s3_md5("a", 1, md5s[0]);
    vb_s3_md5("b", 1, md5s[1]);
    vb_s3_multipart_etag((const uint8_t (*)[16])md5s, 2, etag, sizeof(etag));
    {
        char hex[33];
        uint8_t both[32], md[16];
        memcpy(both, md5s, 32);
        vb_s3_md5(both, 32, md);
        vb_hex(md, 16, hex);
        g_assert_true(g_str_has_prefix(etag, hex));
        g_assert_true(g_str_has_suffix(etag, "-2"));
    }

    g_assert_cmpint(vb_s3_parse_content_range("bytes 0-9/100", &a, &b, &t), ==, 0);
    g_assert_true(a == 0 && b == 9 && t == 100);
    g_assert_cmpint(vb_s3_parse_content_range("bytes 5-4/100", &a, &b, &t), ==, -EINVAL);
    g_assert_cmpint(vb_s3_parse_content_range("bytes 0-100/100", &a, &b, &t), ==, -EINVAL);
    g_assert_cmpint(vb_s3_parse_content_range("bytes 0-9/*", &a, &b, &t), ==, -EINVAL);
    g_assert_cmpint(vb_s3_parse_content_range("bytes -9/100", &a, &b, &t), ==, -EINVAL);
    g_assert_cmpint(vb_s3_parse_content_range("items 0-9/100", &a, &b, &t), ==, -EINVAL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-s3-parse/sigv4", test_sigv4);
    g_test_add_func("/repo-s3-parse/canonical-headers", test_canonical_headers);
    g_test_add_func("/repo-s3-parse/uri", test_uri);
    g_test_add_func("/repo-s3-parse/location", test_location);
    g_test_add_func("/repo-s3-parse/endpoint", test_endpoint);
    g_test_add_func("/repo-s3-parse/dates", test_dates);
    g_test_add_func("/repo-s3-parse/object-lock", test_object_lock);
    g_test_add_func("/repo-s3-parse/xml", test_xml);
    g_test_add_func("/repo-s3-parse/list", test_list);
    g_test_add_func("/repo-s3-parse/list-mutations", test_list_mutations);
    g_test_add_func("/repo-s3-parse/messages", test_messages);
    g_test_add_func("/repo-s3-parse/versions", test_versions);
    return g_test_run();
}
