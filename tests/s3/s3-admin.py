#!/usr/bin/env python3
# A few S3 requests the s3 suite makes beside vbackup's own store, signed
# with SigV4 by hand (the standard library only; no AWS CLI needed): bucket
# policies, versions and delete markers, retention, an "attacker" that
# deletes everything, and the recovery from it (docs/deploy.md,
# "Ransomware protection").  Keys and endpoint from AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION; path-style addressing.
#
#   s3-admin.py req METHOD BUCKET KEY [QUERY [BODY-FILE]]
#                                      one request; prints the status, then the body
#   s3-admin.py policy BUCKET FILE      PutBucketPolicy
#   s3-admin.py versions BUCKET PREFIX  ListObjectVersions: "KEY VERSION latest|old
#                                      object|marker" per line
#   s3-admin.py delete-all BUCKET PREFIX
#                                      DELETE (no versionId) of every current object:
#                                      on a versioned bucket, a delete marker each
#   s3-admin.py undelete BUCKET PREFIX [SINCE]
#                                      remove the delete markers that hide an object
#                                      (DELETE ?versionId=MARKER), only those made at or
#                                      after SINCE (seconds since the epoch, the server's
#                                      clock) when given; prints how many
import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

ENDPOINT = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
REGION = os.environ.get("AWS_REGION", "us-east-1")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def quote(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def request(method, bucket, key="", query=None, body=b"", headers=None):
    """(status, body bytes, headers) of one signed request."""
    access = os.environ["AWS_ACCESS_KEY_ID"]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    host = urllib.parse.urlsplit(ENDPOINT).netloc
    path = "/" + quote(bucket) + ("/" + quote(key, safe="-_.~/") if key else "")
    q = sorted((query or {}).items())
    qs = "&".join("%s=%s" % (quote(k), quote(v)) for k, v in q)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz = now.strftime("%Y%m%dT%H%M%SZ")
    sha = hashlib.sha256(body).hexdigest()
    h = {"host": host, "x-amz-date": amz, "x-amz-content-sha256": sha}
    if body:
        import base64
        h["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    for k, v in (headers or {}).items():
        h[k.lower()] = v
    names = sorted(h)
    canon = "\n".join([method, path, qs, "".join("%s:%s\n" % (n, h[n].strip()) for n in names),
                       ";".join(names), sha])
    scope = "%s/%s/s3/aws4_request" % (amz[:8], REGION)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(canon.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (amz[:8], REGION, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access, scope, ";".join(names), sig)
    del h["host"]
    url = ENDPOINT + path + ("?" + qs if qs else "")
    req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                 method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def versions(bucket, prefix):
    """[(key, version id, latest, is delete marker, LastModified as seconds)] under prefix"""
    out, km, vm = [], None, None
    while True:
        q = {"versions": "", "prefix": prefix}
        if km is not None:
            q["key-marker"] = km
            q["version-id-marker"] = vm
        st, body, _ = request("GET", bucket, "", q)
        if st != 200:
            raise SystemExit("ListObjectVersions: HTTP %d %s" % (st, body[:300]))
        root = ET.fromstring(body)
        for el in root:
            tag = el.tag.replace(NS, "")
            if tag in ("Version", "DeleteMarker"):
                t = datetime.datetime.strptime(el.find(NS + "LastModified").text[:19],
                                               "%Y-%m-%dT%H:%M:%S")
                out.append((el.find(NS + "Key").text, el.find(NS + "VersionId").text,
                            el.find(NS + "IsLatest").text == "true", tag == "DeleteMarker",
                            t.replace(tzinfo=datetime.timezone.utc).timestamp()))
        if root.find(NS + "IsTruncated").text != "true":
            return out
        km = root.find(NS + "NextKeyMarker").text
        vm = root.find(NS + "NextVersionIdMarker").text


def main(argv):
    cmd = argv[1]
    if cmd == "req":
        method, bucket, key = argv[2], argv[3], argv[4]
        query = dict(urllib.parse.parse_qsl(argv[5], keep_blank_values=True)) if len(argv) > 5 else {}
        body = open(argv[6], "rb").read() if len(argv) > 6 else b""
        hdrs = {}
        for kv in os.environ.get("S3_ADMIN_HEADERS", "").split(";"):
            if kv:
                n, v = kv.split(":", 1)
                hdrs[n] = v
        st, b, _ = request(method, bucket, key, query, body, hdrs)
        print(st)
        sys.stdout.write(b.decode(errors="replace"))
        return 0 if st < 300 else 1
    if cmd == "policy":
        st, b, _ = request("PUT", argv[2], "", {"policy": ""}, open(argv[3], "rb").read())
        if st not in (200, 204):
            raise SystemExit("PutBucketPolicy: HTTP %d %s" % (st, b[:300]))
        return 0
    if cmd == "versions":
        for key, vid, latest, marker, t in versions(argv[2], argv[3]):
            print(key, vid, "latest" if latest else "old", "marker" if marker else "object",
                  int(t))
        return 0
    if cmd == "delete-all":
        n = 0
        for key, vid, latest, marker, t in versions(argv[2], argv[3]):
            if latest and not marker:
                st, b, _ = request("DELETE", argv[2], key)
                if st not in (200, 204):
                    raise SystemExit("DELETE %s: HTTP %d %s" % (key, st, b[:300]))
                n += 1
        print(n)
        return 0
    if cmd == "undelete":
        n = 0
        while True:     # markers may be stacked: remove the newest until an object shows
            since = float(argv[4]) if len(argv) > 4 else 0
            top = [(k, v) for k, v, latest, marker, t in versions(argv[2], argv[3])
                   if latest and marker and t >= since]
            if not top:
                break
            for key, vid in top:
                st, b, _ = request("DELETE", argv[2], key, {"versionId": vid})
                if st not in (200, 204):
                    raise SystemExit("DELETE %s?versionId=%s: HTTP %d %s" % (key, vid, st, b[:300]))
                n += 1
        print(n)
        return 0
    raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
