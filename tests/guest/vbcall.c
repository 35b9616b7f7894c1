// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vbcall - guest-side transport tests for /dev/vbackup.
 *
 * Runs inside the test guest against tests/guest/echo-peer.py on the host
 * (the peer echoes payloads and obeys "VBTEST:" directives, see there).
 * Each mode prints "ok <check>" lines and exits 0, or prints
 * "FAIL <check>: <why>" and exits 1.
 *
 *   vbcall call [-t TYPE] [-p PAYLOAD] [-c REPLY_CAP] [-s STATUS] [-e]
 *   vbcall echo [-n COUNT] [-z SIZE]
 *   vbcall concurrent [-n THREADS] [-i ITERATIONS] [-d MAX_DELAY_MS]
 *   vbcall big
 *   vbcall unavailable [-m MAX_MS]
 *   vbcall wait-ok [-T SECONDS]
 *   vbcall interrupt
 *   vbcall closemid [-n THREADS]
 *   vbcall hold [-n THREADS] [-s STATUS] [-m MAX_MS] [-S LINE]
 *                                 (prints LINE once the calls are on the ring)
 *   vbcall peerproto
 *   vbcall badframes
 *   vbcall raw-malformed          (needs virtio_backup.vb_test_malformed=1)
 *   vbcall zerolen                (breaks the device until the driver resets it)
 *   vbcall removal [-n THREADS] -u UNBIND_PATH -v VIRTIO_NAME
 *   vbcall removal [-n THREADS] -u - [-m MAX_MS]
 *                                 (prints "STEP unplug-now": the host unplugs it)
 *
 * Built static by tests/guest/artifacts with -Wall -Wextra -Werror.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vbackup/proto.h"
#include "virtio_backup_test.h"

#define DEV_PATH "/dev/vbackup"

static int failures;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void ok(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	fputs("ok ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	failures++;
	fputs("FAIL ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int open_dev(void)
{
	int fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("FAIL open %s: %s\n", DEV_PATH, strerror(errno));
		exit(1);
	}
	return fd;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		printf("FAIL out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* A reply as the caller sees it. */
struct reply {
	struct vb_hdr hdr;
	uint8_t *payload;       /* points into buf */
	uint32_t len;           /* bytes of reply frame */
	uint8_t *buf;
};

/*
 * One VBACKUP_IOC_CALL with a frame built from type, tag and payload.
 * Returns 0 or -errno.  On success *r holds the reply (free r->buf).
 */
static int do_call(int fd, uint16_t type, uint64_t tag, const void *payload,
		   uint32_t plen, uint32_t reply_cap, struct reply *r)
{
	uint8_t *req = xmalloc(VB_HDR_SIZE + plen);
	struct vb_hdr h = {
		.magic = VB_MAGIC, .version = VB_PROTO_VERSION, .type = type,
		.tag = tag, .len = plen,
	};
	struct vbackup_call c;
	int ret;

	memcpy(req, &h, sizeof(h));
	if (plen)
		memcpy(req + VB_HDR_SIZE, payload, plen);
	r->buf = xmalloc(reply_cap);
	memset(&c, 0, sizeof(c));
	c.req = (uintptr_t)req;
	c.req_len = VB_HDR_SIZE + plen;
	c.reply = (uintptr_t)r->buf;
	c.reply_cap = reply_cap;
	ret = ioctl(fd, VBACKUP_IOC_CALL, &c) ? -errno : 0;
	free(req);
	if (ret) {
		free(r->buf);
		r->buf = NULL;
		return ret;
	}
	r->len = c.reply_len;
	memcpy(&r->hdr, r->buf, sizeof(r->hdr));
	r->payload = r->buf + VB_HDR_SIZE;
	return 0;
}

/* A raw frame through VBACKUP_IOC_CALL (for bad headers). */
static int raw_call(int fd, const void *req, uint32_t req_len, uint32_t reply_cap,
		    uint32_t flags, struct reply *r)
{
	struct vbackup_call c;
	int ret;

	r->buf = xmalloc(reply_cap);
	memset(&c, 0, sizeof(c));
	c.req = (uintptr_t)req;
	c.req_len = req_len;
	c.reply = (uintptr_t)r->buf;
	c.reply_cap = reply_cap;
	c.flags = flags;
	ret = ioctl(fd, VBACKUP_IOC_CALL, &c) ? -errno : 0;
	if (ret) {
		free(r->buf);
		r->buf = NULL;
		return ret;
	}
	r->len = c.reply_len;
	memcpy(&r->hdr, r->buf, sizeof(r->hdr));
	r->payload = r->buf + VB_HDR_SIZE;
	return 0;
}

/* Check a reply header: magic, version, type, tag, len consistent. */
static bool reply_sane(const char *what, const struct reply *r, uint16_t type,
		       uint64_t tag)
{
	if (r->len < VB_HDR_SIZE || r->hdr.magic != VB_MAGIC ||
	    r->hdr.version != VB_PROTO_VERSION ||
	    r->hdr.type != (type | VB_REPLY) || r->hdr.tag != tag ||
	    r->hdr.len != r->len - VB_HDR_SIZE) {
		fail("%s: bad reply header (len %u magic %#x version %u type %#x "
		     "tag %#" PRIx64 " (want %#" PRIx64 ") hdr.len %u)", what,
		     r->len, r->hdr.magic, r->hdr.version, r->hdr.type,
		     r->hdr.tag, tag, r->hdr.len);
		return false;
	}
	return true;
}

static void print_reply(const struct reply *r)
{
	int n = r->hdr.status ? (int)r->hdr.len : 0;

	printf("reply status=%d len=%u tag=%#" PRIx64 " msg=%.*s\n",
	       r->hdr.status, r->hdr.len, r->hdr.tag, n, (const char *)r->payload);
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
	size_t i;

	for (i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = seed >> 16;
	}
}

/* ---- call ------------------------------------------------------------- */

static int mode_call(int argc, char **argv)
{
	const char *payload = "hello";
	uint32_t cap = 4096;
	int type = VB_OP_STATUS, want_status = -1, opt;
	bool want_echo = false;
	struct reply r;
	int fd, ret;

	while ((opt = getopt(argc, argv, "t:p:c:s:e")) != -1) {
		switch (opt) {
		case 't': type = atoi(optarg); break;
		case 'p': payload = optarg; break;
		case 'c': cap = strtoul(optarg, NULL, 0); break;
		case 's': want_status = atoi(optarg); break;
		case 'e': want_echo = true; break;
		default: return 2;
		}
	}
	fd = open_dev();
	ret = do_call(fd, type, 0x1234, payload, strlen(payload), cap, &r);
	if (ret) {
		fail("call: ioctl: %s", strerror(-ret));
		return 1;
	}
	print_reply(&r);
	if (!reply_sane("call", &r, type, 0x1234))
		return 1;
	if (want_status >= 0 && r.hdr.status != want_status)
		fail("call: status %d, want %d", r.hdr.status, want_status);
	else if (want_echo && (r.hdr.status != 0 || r.hdr.len != strlen(payload) ||
			       memcmp(r.payload, payload, r.hdr.len)))
		fail("call: reply is not an echo of the request");
	else
		ok("call");
	free(r.buf);
	close(fd);
	return failures != 0;
}

/* ---- echo: sequential round trips ---------------------------------------- */

static int mode_echo(int argc, char **argv)
{
	int count = 10, opt, i, fd;
	uint32_t size = 100;
	double t0;

	while ((opt = getopt(argc, argv, "n:z:")) != -1) {
		switch (opt) {
		case 'n': count = atoi(optarg); break;
		case 'z': size = strtoul(optarg, NULL, 0); break;
		default: return 2;
		}
	}
	fd = open_dev();
	t0 = now_ms();
	for (i = 0; i < count; i++) {
		uint8_t *p = xmalloc(size);
		struct reply r;
		int ret;

		fill_pattern(p, size, i);
		ret = do_call(fd, VB_OP_HELLO, 1000 + i, p, size,
			      VB_HDR_SIZE + size, &r);
		if (ret) {
			fail("echo %d: %s", i, strerror(-ret));
		} else {
			if (reply_sane("echo", &r, VB_OP_HELLO, 1000 + i) &&
			    (r.hdr.status || r.hdr.len != size ||
			     memcmp(r.payload, p, size)))
				fail("echo %d: payload differs (status %d len %u)",
				     i, r.hdr.status, r.hdr.len);
			free(r.buf);
		}
		free(p);
	}
	if (!failures)
		ok("echo %d x %u bytes, %.2f ms per call", count, size,
		   (now_ms() - t0) / count);
	close(fd);
	return failures != 0;
}

/* ---- concurrent callers ---------------------------------------------------- */

/* Callers about to call: counted by worker_main just before the ioctl. */
static int calls_entered;

/* Requests the driver holds (its live_requests parameter), or -1. */
static int live_requests(void)
{
	FILE *f = fopen("/sys/module/virtio_backup/parameters/live_requests",
			"r");
	int n = -1;

	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/*
 * Wait until n callers have entered their call and the driver holds at least
 * n requests: the calls are allocated and go onto the ring.  This replaces a
 * fixed pause that a slow guest could outlast; the deadline is a safety net.
 */
static void wait_on_ring(int n, const char *what)
{
	double t0 = now_ms();

	while (__atomic_load_n(&calls_entered, __ATOMIC_ACQUIRE) < n ||
	       live_requests() < n) {
		if (now_ms() - t0 > 60000) {
			fail("%s: after 60 s, %d of %d callers in their call, "
			     "%d requests allocated", what,
			     __atomic_load_n(&calls_entered, __ATOMIC_ACQUIRE),
			     n, live_requests());
			exit(1);
		}
		usleep(10 * 1000);
	}
}

struct worker {
	pthread_t thread;
	int id;
	int iterations;
	int max_delay;
	int fd;
	int errors;
	int expect_status;      /* -1: echo expected */
	int expect_errno;       /* 0: ioctl must succeed */
	double elapsed_ms;
	const char *directive;  /* fixed VBTEST directive, or NULL */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned int seed = w->id * 7919u + 1;
	double t0 = now_ms();
	int i;

	for (i = 0; i < w->iterations; i++) {
		uint64_t tag = ((uint64_t)w->id << 32) | (uint32_t)i;
		uint32_t body = 16 + rand_r(&seed) % 2048;
		char head[96];
		uint32_t hlen, plen;
		uint8_t *p;
		struct reply r;
		int ret;

		if (rand_r(&seed) % 8 == 0)
			body += 60000;          /* some larger than a page */
		if (w->directive)
			hlen = snprintf(head, sizeof(head), "VBTEST:%s\n",
					w->directive);
		else
			hlen = snprintf(head, sizeof(head),
					"VBTEST:delay=%d\nworker %d call %d\n",
					w->max_delay ? rand_r(&seed) % w->max_delay : 0,
					w->id, i);
		plen = hlen + body;
		p = xmalloc(plen);
		memcpy(p, head, hlen);
		fill_pattern(p + hlen, body, tag ^ (tag >> 32));

		__atomic_add_fetch(&calls_entered, 1, __ATOMIC_RELEASE);
		ret = do_call(w->fd, VB_OP_STATUS, tag, p, plen,
			      VB_HDR_SIZE + plen, &r);
		if (w->expect_errno) {
			if (ret != -w->expect_errno) {
				fail("worker %d call %d: ioctl returned %s, want %s",
				     w->id, i, ret ? strerror(-ret) : "success",
				     strerror(w->expect_errno));
				w->errors++;
			}
			if (!ret)
				free(r.buf);
			free(p);
			continue;
		}
		if (ret) {
			fail("worker %d call %d: ioctl: %s", w->id, i,
			     strerror(-ret));
			w->errors++;
		} else {
			if (!reply_sane("concurrent", &r, VB_OP_STATUS, tag)) {
				w->errors++;
			} else if (w->expect_status >= 0) {
				if (r.hdr.status != w->expect_status) {
					fail("worker %d call %d: status %d, want %d",
					     w->id, i, r.hdr.status,
					     w->expect_status);
					w->errors++;
				}
			} else if (r.hdr.status || r.hdr.len != plen ||
				   memcmp(r.payload, p, plen)) {
				fail("worker %d call %d: reply is not its own echo "
				     "(status %d len %u want %u)", w->id, i,
				     r.hdr.status, r.hdr.len, plen);
				w->errors++;
			}
			free(r.buf);
		}
		free(p);
	}
	w->elapsed_ms = now_ms() - t0;
	return NULL;
}

static int run_workers(int n, int iterations, int max_delay)
{
	struct worker *w = calloc(n, sizeof(*w));
	int i, errors = 0, fd = open_dev();

	if (!w)
		exit(1);
	for (i = 0; i < n; i++) {
		w[i].id = i + 1;
		w[i].iterations = iterations;
		w[i].max_delay = max_delay;
		w[i].fd = fd;
		w[i].expect_status = -1;
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i])) {
			fail("pthread_create");
			exit(1);
		}
	}
	for (i = 0; i < n; i++) {
		pthread_join(w[i].thread, NULL);
		errors += w[i].errors;
	}
	close(fd);
	free(w);
	return errors;
}

static int mode_concurrent(int argc, char **argv)
{
	int n = 32, iterations = 4, max_delay = 200, opt;
	double t0 = now_ms();

	while ((opt = getopt(argc, argv, "n:i:d:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'i': iterations = atoi(optarg); break;
		case 'd': max_delay = atoi(optarg); break;
		default: return 2;
		}
	}
	if (!run_workers(n, iterations, max_delay))
		ok("concurrent: %d callers x %d calls, replies matched, %.0f ms",
		   n, iterations, now_ms() - t0);
	return failures != 0;
}

/* ---- big frames -------------------------------------------------------------- */

static int mode_big(int argc, char **argv)
{
	uint32_t plen = VB_MAX_PAYLOAD;
	uint8_t *p = xmalloc(plen);
	struct reply r;
	char dir[64];
	int fd = open_dev(), ret;
	uint32_t i;
	double t0;

	(void)argc;
	(void)argv;
	/* Largest request, echoed into the largest reply. */
	fill_pattern(p, plen, 42);
	memcpy(p, "VBTEST:x\n", 9);
	t0 = now_ms();
	ret = do_call(fd, VB_OP_BACKUP_DATA, 77, p, plen, VB_MAX_FRAME, &r);
	if (ret) {
		fail("big echo: %s", strerror(-ret));
	} else {
		if (reply_sane("big echo", &r, VB_OP_BACKUP_DATA, 77) &&
		    (r.hdr.status || r.hdr.len != plen || memcmp(r.payload, p, plen)))
			fail("big echo: payload differs");
		else
			ok("big echo: %u byte frame both ways, %.0f ms",
			   VB_MAX_FRAME, now_ms() - t0);
		free(r.buf);
	}

	/* Small request, largest reply. */
	snprintf(dir, sizeof(dir), "VBTEST:size=%u\n", VB_MAX_PAYLOAD);
	ret = do_call(fd, VB_OP_RESTORE_READ, 78, dir, strlen(dir), VB_MAX_FRAME, &r);
	if (ret) {
		fail("big reply: %s", strerror(-ret));
	} else {
		bool good = reply_sane("big reply", &r, VB_OP_RESTORE_READ, 78) &&
			    r.hdr.len == VB_MAX_PAYLOAD;

		for (i = 0; good && i < VB_MAX_PAYLOAD; i++)
			good = r.payload[i] == (uint8_t)((i * 31 + 7) & 0xff);
		if (good)
			ok("big reply: %u bytes", VB_MAX_PAYLOAD);
		else
			fail("big reply: content differs");
		free(r.buf);
	}

	/* A reply that does not fit the buffer: the peer says so. */
	snprintf(dir, sizeof(dir), "VBTEST:size=5000\n");
	ret = do_call(fd, VB_OP_RESTORE_READ, 79, dir, strlen(dir), 1000, &r);
	if (ret) {
		fail("small reply buffer: %s", strerror(-ret));
	} else {
		if (reply_sane("small reply buffer", &r, VB_OP_RESTORE_READ, 79) &&
		    r.hdr.status == VB_S_REPLY_TOO_SMALL)
			ok("small reply buffer: VB_S_REPLY_TOO_SMALL");
		else
			fail("small reply buffer: status %d", r.hdr.status);
		free(r.buf);
	}
	free(p);
	close(fd);
	return failures != 0;
}

/* ---- peer down ----------------------------------------------------------- */

static int mode_unavailable(int argc, char **argv)
{
	int max_ms = 2000, opt, fd, ret, i;
	struct reply r;

	while ((opt = getopt(argc, argv, "m:")) != -1) {
		switch (opt) {
		case 'm': max_ms = atoi(optarg); break;
		default: return 2;
		}
	}
	fd = open_dev();
	for (i = 0; i < 3; i++) {
		double t0 = now_ms(), dt;

		ret = do_call(fd, VB_OP_HELLO, 500 + i, "hi", 2, 4096, &r);
		dt = now_ms() - t0;
		if (ret) {
			fail("unavailable: ioctl: %s", strerror(-ret));
			continue;
		}
		if (!reply_sane("unavailable", &r, VB_OP_HELLO, 500 + i)) {
		} else if (r.hdr.status != VB_S_UNAVAILABLE) {
			fail("unavailable: status %d, want %d", r.hdr.status,
			     VB_S_UNAVAILABLE);
		} else if (r.hdr.len == 0 ||
			   !memmem(r.payload, r.hdr.len, "not connected", 13)) {
			fail("unavailable: message %.*s", (int)r.hdr.len,
			     (char *)r.payload);
		} else if (dt > max_ms) {
			fail("unavailable: took %.0f ms (max %d)", dt, max_ms);
		} else {
			ok("unavailable: VB_S_UNAVAILABLE \"%.*s\" in %.1f ms",
			   (int)r.hdr.len, (char *)r.payload, dt);
		}
		free(r.buf);
	}
	close(fd);
	return failures != 0;
}

static int mode_wait_ok(int argc, char **argv)
{
	int timeout = 30, opt, fd, ret, tries = 0;
	double t0 = now_ms();
	struct reply r;

	while ((opt = getopt(argc, argv, "T:")) != -1) {
		switch (opt) {
		case 'T': timeout = atoi(optarg); break;
		default: return 2;
		}
	}
	fd = open_dev();
	for (;;) {
		tries++;
		ret = do_call(fd, VB_OP_HELLO, 600, "ping", 4, 4096, &r);
		if (!ret) {
			int status = r.hdr.status;

			free(r.buf);
			if (status == VB_S_OK) {
				ok("wait-ok: call succeeded after %.0f ms, %d tries",
				   now_ms() - t0, tries);
				break;
			}
			if (status != VB_S_UNAVAILABLE) {
				fail("wait-ok: status %d", status);
				break;
			}
		} else {
			fail("wait-ok: ioctl: %s", strerror(-ret));
			break;
		}
		if (now_ms() - t0 > timeout * 1000.0) {
			fail("wait-ok: still unavailable after %d s", timeout);
			break;
		}
		usleep(100 * 1000);
	}
	close(fd);
	return failures != 0;
}

/* ---- signals ---------------------------------------------------------------- */

static void on_alarm(int sig)
{
	(void)sig;
}

static int mode_interrupt(int argc, char **argv)
{
	struct sigaction sa;
	struct itimerval it;
	const char *slow = "VBTEST:delay=3000\nslow";
	struct reply r;
	int fd = open_dev(), ret;
	double t0, dt;

	(void)argc;
	(void)argv;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;       /* no SA_RESTART */
	sigaction(SIGALRM, &sa, NULL);
	memset(&it, 0, sizeof(it));
	it.it_value.tv_usec = 300 * 1000;
	setitimer(ITIMER_REAL, &it, NULL);

	t0 = now_ms();
	ret = do_call(fd, VB_OP_STATUS, 700, slow, strlen(slow), 4096, &r);
	dt = now_ms() - t0;
	if (ret == -EINTR && dt < 2000)
		ok("interrupt: EINTR after %.0f ms", dt);
	else
		fail("interrupt: got %s after %.0f ms, want EINTR",
		     ret ? strerror(-ret) : "a reply", dt);
	if (!ret)
		free(r.buf);

	/* The abandoned request is still in flight; later calls must work. */
	ret = do_call(fd, VB_OP_STATUS, 701, "after", 5, 4096, &r);
	if (ret) {
		fail("interrupt: next call: %s", strerror(-ret));
	} else {
		if (reply_sane("interrupt: next call", &r, VB_OP_STATUS, 701) &&
		    r.hdr.status == 0 && r.hdr.len == 5 &&
		    !memcmp(r.payload, "after", 5))
			ok("interrupt: next call answered while the first is pending");
		else
			fail("interrupt: next call: wrong reply");
		free(r.buf);
	}

	/* Many interrupted calls at once. */
	it.it_value.tv_usec = 100 * 1000;
	setitimer(ITIMER_REAL, &it, NULL);
	{
		int i, eintr = 0;

		for (i = 0; i < 20; i++) {
			ret = do_call(fd, VB_OP_STATUS, 800 + i, slow, strlen(slow),
				      4096, &r);
			if (ret == -EINTR) {
				eintr++;
				setitimer(ITIMER_REAL, &it, NULL);
			} else if (!ret) {
				free(r.buf);
			}
		}
		if (eintr >= 19)
			ok("interrupt: %d of 20 calls interrupted", eintr);
		else
			fail("interrupt: only %d of 20 calls interrupted", eintr);
	}
	close(fd);
	return failures != 0;
}

/* ---- calls held by the peer ------------------------------------------------- */

static struct worker *start_holders(int n, int fd, int status, int err)
{
	struct worker *w = calloc(n, sizeof(*w));
	int i;

	if (!w)
		exit(1);
	for (i = 0; i < n; i++) {
		w[i].id = i + 1;
		w[i].iterations = 1;
		w[i].fd = fd;
		w[i].expect_status = status;
		w[i].expect_errno = err;
		w[i].directive = "delay=20000";
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i])) {
			fail("pthread_create");
			exit(1);
		}
	}
	return w;
}

static void join_holders(struct worker *w, int n, int max_ms)
{
	int i;

	for (i = 0; i < n; i++)
		pthread_join(w[i].thread, NULL);
	for (i = 0; i < n; i++)
		if (w[i].elapsed_ms > max_ms)
			fail("worker %d took %.0f ms (max %d)", w[i].id,
			     w[i].elapsed_ms, max_ms);
}

/* ---- peer closes with calls in flight ------------------------------------- */

static int mode_closemid(int argc, char **argv)
{
	int n = 8, opt, fd, ret;
	struct worker *w;
	struct reply r;
	double t0 = now_ms();

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		default: return 2;
		}
	}
	fd = open_dev();
	/* Calls whose replies would come only after 20 s... */
	w = start_holders(n, fd, VB_S_UNAVAILABLE, 0);
	wait_on_ring(n, "closemid");
	/* ...then the peer is told to hang up. */
	ret = do_call(fd, VB_OP_CANCEL, 900, "VBTEST:close\n", 13, 4096, &r);
	if (ret)
		fail("closemid: close call: %s", strerror(-ret));
	else if (r.hdr.status != VB_S_UNAVAILABLE)
		fail("closemid: close call: status %d", r.hdr.status);
	if (!ret)
		free(r.buf);
	join_holders(w, n, 5000);
	if (!failures)
		ok("closemid: %d calls in flight failed with VB_S_UNAVAILABLE in %.0f ms",
		   n + 1, now_ms() - t0);
	free(w);
	close(fd);
	return failures != 0;
}

/* Calls held by the peer until something else ends them (host side). */
static int mode_hold(int argc, char **argv)
{
	int n = 8, status = VB_S_UNAVAILABLE, max_ms = 30000, opt, fd;
	const char *step = NULL;
	struct worker *w;
	double t0 = now_ms();

	while ((opt = getopt(argc, argv, "n:s:m:S:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 's': status = atoi(optarg); break;
		case 'm': max_ms = atoi(optarg); break;
		case 'S': step = optarg; break;
		default: return 2;
		}
	}
	fd = open_dev();
	w = start_holders(n, fd, status, 0);
	if (step) {
		/* the host acts on this line: only once the calls are held */
		wait_on_ring(n, "hold");
		printf("%s\n", step);
		fflush(stdout);
	}
	join_holders(w, n, max_ms);
	if (!failures)
		ok("hold: %d calls ended with status %d after %.0f ms", n, status,
		   now_ms() - t0);
	free(w);
	close(fd);
	return failures != 0;
}

/* ---- replies that break the rules ------------------------------------------ */

static void expect_status(int fd, const char *what, const char *payload,
			  uint32_t cap, int status)
{
	struct reply r;
	int ret;

	ret = do_call(fd, VB_OP_STATUS, 1111, payload, strlen(payload), cap, &r);
	if (ret) {
		fail("%s: ioctl: %s", what, strerror(-ret));
		return;
	}
	if (reply_sane(what, &r, VB_OP_STATUS, 1111)) {
		if (r.hdr.status != status)
			fail("%s: status %d, want %d", what, r.hdr.status, status);
		else if (status == 0 && (r.hdr.len != strlen(payload) ||
					 memcmp(r.payload, payload, r.hdr.len)))
			fail("%s: payload differs", what);
		else
			ok("%s: status %d", what, status);
	}
	free(r.buf);
}

static int mode_peerproto(int argc, char **argv)
{
	int fd = open_dev();

	(void)argc;
	(void)argv;
	expect_status(fd, "peer reply larger than reply_max",
		      "VBTEST:oversize\n", 200, VB_S_BAD_FRAME);
	expect_status(fd, "connection survives an oversized reply",
		      "VBTEST:x\nstill here", 200, VB_S_OK);
	expect_status(fd, "stray reply with an unknown tag is ignored",
		      "VBTEST:stray\nmine", 200, VB_S_OK);
	expect_status(fd, "reply written in 7-byte pieces",
		      "VBTEST:split\nthis reply arrives in small pieces", 200,
		      VB_S_OK);
	expect_status(fd, "status passed through", "VBTEST:status=17\n", 200, 17);
	expect_status(fd, "garbage from the peer drops the connection",
		      "VBTEST:badmagic\n", 200, VB_S_UNAVAILABLE);
	close(fd);
	return failures != 0;
}

/* ---- bad frames from the guest ---------------------------------------------- */

static void bad_frame(int fd, const char *what, const struct vb_hdr *h,
		      uint32_t req_len, uint32_t cap, int want_status)
{
	uint8_t *req = calloc(1, req_len < VB_HDR_SIZE ? VB_HDR_SIZE : req_len);
	struct reply r;
	int ret;

	memcpy(req, h, sizeof(*h));
	ret = raw_call(fd, req, req_len, cap, 0, &r);
	free(req);
	if (ret) {
		fail("%s: ioctl: %s", what, strerror(-ret));
		return;
	}
	if (r.hdr.magic != VB_MAGIC || r.hdr.status != want_status ||
	    r.hdr.tag != h->tag || r.hdr.len != r.len - VB_HDR_SIZE ||
	    !(r.hdr.type & VB_REPLY))
		fail("%s: reply status %d len %u tag %#" PRIx64 ", want status %d",
		     what, r.hdr.status, r.len, r.hdr.tag, want_status);
	else
		ok("%s: status %d \"%.*s\"", what, r.hdr.status, (int)r.hdr.len,
		   (char *)r.payload);
	free(r.buf);
}

static void bad_ioctl(int fd, const char *what, uint32_t req_len, uint32_t cap,
		      uint32_t flags)
{
	static uint8_t req[VB_MAX_FRAME + 16];
	struct reply r;
	int ret = raw_call(fd, req, req_len, cap, flags, &r);

	if (ret == -EINVAL)
		ok("%s: EINVAL", what);
	else
		fail("%s: got %s, want EINVAL", what, ret ? strerror(-ret) : "success");
	if (!ret)
		free(r.buf);
}

static int mode_badframes(int argc, char **argv)
{
	struct vb_hdr good = {
		.magic = VB_MAGIC, .version = VB_PROTO_VERSION,
		.type = VB_OP_STATUS, .tag = 0xfeedface, .len = 8,
	};
	struct vb_hdr h;
	struct reply r;
	int fd = open_dev(), ret;

	(void)argc;
	(void)argv;
	h = good;
	h.magic = 0xdeadbeef;
	bad_frame(fd, "bad magic", &h, VB_HDR_SIZE + 8, 4096, VB_S_BAD_FRAME);
	h = good;
	h.version = VB_PROTO_VERSION + 1;
	bad_frame(fd, "bad version", &h, VB_HDR_SIZE + 8, 4096, VB_S_BAD_VERSION);
	h = good;
	h.len = 100;
	bad_frame(fd, "len larger than the frame", &h, VB_HDR_SIZE + 8, 4096,
		  VB_S_BAD_FRAME);
	h = good;
	h.len = 0;
	bad_frame(fd, "len smaller than the frame", &h, VB_HDR_SIZE + 8, 4096,
		  VB_S_BAD_FRAME);
	h = good;
	h.len = 0xffffffe0u;
	bad_frame(fd, "len overflowing", &h, VB_HDR_SIZE + 8, 4096,
		  VB_S_BAD_FRAME);
	h = good;
	bad_frame(fd, "message cut to a tiny reply buffer", &(struct vb_hdr){
			  .magic = 1, .tag = 5 }, VB_HDR_SIZE, VB_HDR_SIZE + 3,
		  VB_S_BAD_FRAME);

	bad_ioctl(fd, "request shorter than a header", VB_HDR_SIZE - 1, 4096, 0);
	bad_ioctl(fd, "request larger than VB_MAX_FRAME", VB_MAX_FRAME + 1, 4096, 0);
	bad_ioctl(fd, "reply buffer shorter than a header", VB_HDR_SIZE, 31, 0);
	bad_ioctl(fd, "reply buffer larger than VB_MAX_FRAME", VB_HDR_SIZE,
		  VB_MAX_FRAME + 1, 0);
	bad_ioctl(fd, "flags set", VB_HDR_SIZE, 4096, 1);

	/* Everything still works. */
	ret = do_call(fd, VB_OP_HELLO, 42, "VBTEST:x\nalive", 14, 4096, &r);
	if (!ret && reply_sane("after bad frames", &r, VB_OP_HELLO, 42) &&
	    r.hdr.status == 0)
		ok("good call after bad frames");
	else
		fail("good call after bad frames: %s", ret ? strerror(-ret) : "bad reply");
	if (!ret)
		free(r.buf);
	close(fd);
	return failures != 0;
}

/* ---- malformed descriptor chains (test ioctl) ----------------------------- */

struct raw {
	uint8_t *out;
	uint8_t *in;
	struct vbackup_test_raw t;
};

static int raw_go(int fd, struct raw *x, const uint32_t *out_len, int n_out,
		  const uint32_t *in_len, int n_in, uint32_t timeout_ms)
{
	uint32_t in_total = 0;
	int i;

	memset(&x->t, 0, sizeof(x->t));
	for (i = 0; i < n_out; i++)
		x->t.out_len[i] = out_len[i];
	for (i = 0; i < n_in; i++) {
		x->t.in_len[i] = in_len[i];
		in_total += in_len[i];
	}
	/* The module hands back its own (zeroed) buffers, whatever the
	 * device wrote: fill ours to see that they are copied. */
	x->in = xmalloc(in_total);
	memset(x->in, 0xee, in_total);
	x->t.n_out = n_out;
	x->t.n_in = n_in;
	x->t.out = (uintptr_t)x->out;
	x->t.in = (uintptr_t)x->in;
	x->t.timeout_ms = timeout_ms;
	return ioctl(fd, VBACKUP_IOC_TEST_RAW, &x->t) ? -errno : 0;
}

static uint8_t *frame(uint32_t plen, uint64_t tag, const char *payload)
{
	uint8_t *f = calloc(1, VB_HDR_SIZE + plen + 1);
	struct vb_hdr h = {
		.magic = VB_MAGIC, .version = VB_PROTO_VERSION,
		.type = VB_OP_STATUS, .tag = tag, .len = plen,
	};

	memcpy(f, &h, sizeof(h));
	if (payload)
		memcpy(f + VB_HDR_SIZE, payload, plen);
	return f;
}

static int mode_raw_malformed(int argc, char **argv)
{
	const char *msg = "VBTEST:x\nscattered across segments";
	uint32_t mlen = strlen(msg);
	struct raw x;
	struct vb_hdr h;
	int fd = open_dev(), ret;

	(void)argc;
	(void)argv;

	/* No reply buffer at all: nothing can be written back. */
	x.out = frame(4, 1, "abcd");
	ret = raw_go(fd, &x, (uint32_t[]){ VB_HDR_SIZE + 4 }, 1, NULL, 0, 5000);
	if (ret == -ENOTTY) {
		fail("raw: module not loaded with vb_test_malformed=1");
		return 1;
	}
	if (!ret && x.t.used_len == 0)
		ok("raw: chain without a reply buffer returned unused");
	else
		fail("raw: no reply buffer: %s used %u", strerror(-ret), x.t.used_len);
	free(x.out);
	free(x.in);

	/* Only a reply buffer. */
	x.out = frame(0, 2, NULL);
	ret = raw_go(fd, &x, NULL, 0, (uint32_t[]){ 256 }, 1, 5000);
	memcpy(&h, x.in, sizeof(h));
	if (!ret && x.t.used_len >= VB_HDR_SIZE && h.magic == VB_MAGIC &&
	    h.status == VB_S_BAD_FRAME)
		ok("raw: chain without a request answered VB_S_BAD_FRAME");
	else
		fail("raw: no request: %s used %u status %d", strerror(-ret),
		     x.t.used_len, h.status);
	free(x.out);
	free(x.in);

	/* Reply buffer smaller than a header. */
	x.out = frame(4, 3, "abcd");
	ret = raw_go(fd, &x, (uint32_t[]){ VB_HDR_SIZE + 4 }, 1,
		     (uint32_t[]){ 16 }, 1, 5000);
	if (!ret && x.t.used_len == 0 && !memcmp(x.in, (uint8_t[16]){ 0 }, 16))
		ok("raw: 16-byte reply buffer returned untouched");
	else
		fail("raw: tiny reply: %s used %u", strerror(-ret), x.t.used_len);
	free(x.out);
	free(x.in);

	/* Request bigger than the device accepts (header says so too). */
	x.out = frame(VB_MAX_PAYLOAD + 1, 4, NULL);
	ret = raw_go(fd, &x, (uint32_t[]){ VB_MAX_FRAME + 1 }, 1,
		     (uint32_t[]){ 4096 }, 1, 5000);
	memcpy(&h, x.in, sizeof(h));
	if (!ret && h.status == VB_S_BAD_FRAME && h.tag == 4)
		ok("raw: oversized request answered VB_S_BAD_FRAME \"%.*s\"",
		   (int)h.len, (char *)x.in + VB_HDR_SIZE);
	else
		fail("raw: oversized: %s used %u status %d", strerror(-ret),
		     x.t.used_len, h.status);
	free(x.out);
	free(x.in);

	/* Header split over three segments, reply over three segments. */
	x.out = frame(mlen, 5, msg);
	ret = raw_go(fd, &x, (uint32_t[]){ 10, 22, mlen }, 3,
		     (uint32_t[]){ 20, 12, 200 }, 3, 5000);
	memcpy(&h, x.in, sizeof(h));
	if (!ret && x.t.used_len == VB_HDR_SIZE + mlen && h.magic == VB_MAGIC &&
	    h.status == 0 && h.tag == 5 && h.len == mlen &&
	    !memcmp(x.in + VB_HDR_SIZE, msg, mlen))
		ok("raw: frame and reply scattered over segments round-trip");
	else
		fail("raw: scattered: %s used %u status %d tag %" PRIu64,
		     strerror(-ret), x.t.used_len, h.status, h.tag);
	free(x.out);
	free(x.in);

	/* Reply buffer of exactly a header: reply_max 0. */
	x.out = frame(mlen, 6, msg);
	ret = raw_go(fd, &x, (uint32_t[]){ VB_HDR_SIZE + mlen }, 1,
		     (uint32_t[]){ 16, 16 }, 2, 5000);
	memcpy(&h, x.in, sizeof(h));
	if (!ret && x.t.used_len == VB_HDR_SIZE &&
	    h.status == VB_S_REPLY_TOO_SMALL && h.tag == 6)
		ok("raw: header-sized reply buffer gets VB_S_REPLY_TOO_SMALL");
	else
		fail("raw: reply_max 0: %s used %u status %d", strerror(-ret),
		     x.t.used_len, h.status);
	free(x.out);
	free(x.in);

	/* Out buffer larger than the frame the header describes. */
	x.out = frame(8, 7, "12345678");
	ret = raw_go(fd, &x, (uint32_t[]){ VB_HDR_SIZE + 8, 100 }, 2,
		     (uint32_t[]){ 256 }, 1, 5000);
	memcpy(&h, x.in, sizeof(h));
	if (!ret && h.status == VB_S_BAD_FRAME)
		ok("raw: trailing bytes after the frame answered VB_S_BAD_FRAME");
	else
		fail("raw: trailing bytes: %s status %d", strerror(-ret), h.status);
	free(x.out);
	free(x.in);
	close(fd);
	return failures != 0;
}

static int mode_zerolen(int argc, char **argv)
{
	struct raw x;
	int fd = open_dev(), ret;

	(void)argc;
	(void)argv;
	/* QEMU refuses zero-sized buffers and marks the device broken. */
	x.out = frame(4, 9, "abcd");
	ret = raw_go(fd, &x, (uint32_t[]){ VB_HDR_SIZE + 4, 0 }, 2,
		     (uint32_t[]){ 256 }, 1, 2000);
	if (ret == -ETIMEDOUT)
		ok("zerolen: zero-sized segment not answered (device needs reset)");
	else
		fail("zerolen: got %s", ret ? strerror(-ret) : "an answer");
	free(x.out);
	free(x.in);
	close(fd);
	return failures != 0;
}

/* ---- device removal with callers waiting ------------------------------------ */

static int mode_removal(int argc, char **argv)
{
	const char *unbind = NULL, *name = NULL;
	int n = 8, max_ms = 5000, opt, fd, ufd, ret;
	struct worker *w;
	struct reply r;

	while ((opt = getopt(argc, argv, "n:u:v:m:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'u': unbind = optarg; break;
		case 'v': name = optarg; break;
		case 'm': max_ms = atoi(optarg); break;
		default: return 2;
		}
	}
	if (!unbind || (strcmp(unbind, "-") && !name))
		return 2;
	fd = open_dev();
	w = start_holders(n, fd, -1, ENODEV);
	wait_on_ring(n, "removal");
	if (!strcmp(unbind, "-")) {
		/* the host removes the device (QMP device_del) */
		printf("STEP unplug-now\n");
		fflush(stdout);
	} else {
		ufd = open(unbind, O_WRONLY);
		if (ufd < 0 ||
		    write(ufd, name, strlen(name)) != (ssize_t)strlen(name)) {
			fail("removal: unbind %s via %s: %s", name, unbind,
			     strerror(errno));
			exit(1);
		}
		close(ufd);
	}
	join_holders(w, n, max_ms);
	if (!failures)
		ok("removal: %d waiting callers got ENODEV", n);

	ret = do_call(fd, VB_OP_HELLO, 1, "x", 1, 4096, &r);
	if (ret == -ENODEV)
		ok("removal: open file after removal gets ENODEV");
	else
		fail("removal: open file after removal: %s",
		     ret ? strerror(-ret) : "success");
	if (!ret)
		free(r.buf);
	free(w);
	close(fd);
	return failures != 0;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} modes[] = {
	{ "call", mode_call },
	{ "echo", mode_echo },
	{ "concurrent", mode_concurrent },
	{ "big", mode_big },
	{ "unavailable", mode_unavailable },
	{ "wait-ok", mode_wait_ok },
	{ "interrupt", mode_interrupt },
	{ "closemid", mode_closemid },
	{ "hold", mode_hold },
	{ "peerproto", mode_peerproto },
	{ "badframes", mode_badframes },
	{ "raw-malformed", mode_raw_malformed },
	{ "zerolen", mode_zerolen },
	{ "removal", mode_removal },
};

int main(int argc, char **argv)
{
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: vbcall MODE [options]; modes:");
		for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
			fprintf(stderr, " %s", modes[i].name);
		fputc('\n', stderr);
		return 2;
	}
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name))
			return modes[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "vbcall: unknown mode %s\n", argv[1]);
	return 2;
}
