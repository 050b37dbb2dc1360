/* The load client: libcurl with keep-alive, one connection per thread.
 *
 *   client --url URL --token TOKEN call METHOD PATH [BODY] [--field NAME]
 *       one request; prints the answer (or one string field of it); exit 1 unless 2xx
 *   client --url URL --token TOKEN get --path PATH [--conns K] [--seconds S]
 *       K connections each looping GET PATH: requests/s, p50/p99 latency
 *   client --url URL --token TOKEN trigger --job ID [--clients K] [--seconds S | --count N] [--warmup W]
 *          [--gap-ms G]
 *       K clients each looping trigger -> terminal: POST /api/v1/jobs/ID/runs, then
 *       GET /runs/RUN/logs?follow=1 (returns when the run is terminal), then GET
 *       /runs/RUN (must be "succeeded"): latency p50/p99 and completed runs/s; with
 *       --gap-ms each client idles G ms before each cycle (an isolated run)
 *   client --url URL --token TOKEN inflight --job ID --count N [--pid PID] [--seconds S] [--timeout T]
 *       triggers N runs (2 connections), waits until all are running, samples the
 *       daemon's memory (/proc/PID/status), measures GET /runs/RUN for S seconds
 *       on 2 connections, cancels all, waits until all are terminal
 *
 * Prints one JSON object on stdout (times in microseconds unless named _s).
 * Build: cc -O2 -pthread client.c -o client -lcurl -ljansson */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *base_url, *token;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "client: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* ---- latencies ---- */

struct lat {
	double *v;
	size_t n, cap;
};

static void lat_add(struct lat *l, double us)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			die("%s", "out of memory");
	}
	l->v[l->n++] = us;
}

static void lat_merge(struct lat *into, const struct lat *from)
{
	for (size_t i = 0; i < from->n; i++)
		lat_add(into, from->v[i]);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* l must be sorted. */
static double lat_pct(struct lat *l, double p)
{
	if (l->n == 0)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(l->n - 1) + 0.5);
	return l->v[i < l->n ? i : l->n - 1];
}

static json_t *lat_json(struct lat *l)
{
	qsort(l->v, l->n, sizeof(*l->v), cmp_double);
	double sum = 0;
	for (size_t i = 0; i < l->n; i++)
		sum += l->v[i];
	return json_pack("{s:I, s:f, s:f, s:f, s:f}", "n", (json_int_t)l->n, "p50_us", lat_pct(l, 50), "p99_us",
	                 lat_pct(l, 99), "mean_us", l->n ? sum / (double)l->n : 0.0, "max_us",
	                 l->n ? l->v[l->n - 1] : 0.0);
}

/* ---- one keep-alive connection ---- */

struct http {
	CURL *h;
	struct curl_slist *hdr;
	char *buf;
	size_t len, cap;
	char url[2048];
};

static size_t on_data(char *p, size_t sz, size_t nm, void *arg)
{
	struct http *c = arg;
	size_t n = sz * nm;
	if (c->len + n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		while (cap < c->len + n + 1)
			cap *= 2;
		char *b = realloc(c->buf, cap);
		if (!b)
			return 0;
		c->buf = b;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, p, n);
	c->len += n;
	c->buf[c->len] = '\0';
	return n;
}

static void http_init(struct http *c)
{
	memset(c, 0, sizeof(*c));
	c->h = curl_easy_init();
	if (!c->h)
		die("%s", "curl_easy_init failed");
	char auth[1024];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token ? token : "");
	c->hdr = curl_slist_append(c->hdr, auth);
	c->hdr = curl_slist_append(c->hdr, "Content-Type: application/json");
	c->hdr = curl_slist_append(c->hdr, "Expect:");
	curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdr);
	curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, 180000L);
}

static void http_free(struct http *c)
{
	curl_slist_free_all(c->hdr);
	curl_easy_cleanup(c->h);
	free(c->buf);
}

/* Returns the HTTP status, or -1 on a transport error (body in c->buf). */
static long http_do(struct http *c, const char *method, const char *path, const char *body)
{
	snprintf(c->url, sizeof(c->url), "%s%s", base_url, path);
	c->len = 0;
	if (c->buf)
		c->buf[0] = '\0';
	curl_easy_setopt(c->h, CURLOPT_URL, c->url);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, NULL);
	} else {
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
		curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
	}
	CURLcode rc = curl_easy_perform(c->h);
	if (rc != CURLE_OK) {
		fprintf(stderr, "client: %s %s: %s\n", method, path, curl_easy_strerror(rc));
		return -1;
	}
	long status = 0;
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* A string field of the JSON answer, copied into out; false if absent. */
static bool http_field(struct http *c, const char *name, char *out, size_t outlen)
{
	json_t *j = json_loadb(c->buf ? c->buf : "", c->len, 0, NULL);
	const char *v = json_string_value(json_object_get(j, name));
	bool ok = v != NULL;
	if (ok)
		snprintf(out, outlen, "%s", v);
	json_decref(j);
	return ok;
}

/* ---- options ---- */

static const char *opt_path, *opt_job, *opt_field;
static int opt_conns = 2, opt_warmup = 3, opt_gap_ms = 0;
static double opt_seconds = 5, opt_timeout = 180;
static long opt_count = -1, opt_pid = 0;

/* ---- get: requests/s of one path ---- */

static double deadline, t_start;
static pthread_barrier_t ready;

/* Every worker calls this once warmed up; the clock starts when all have. */
static void start_together(void)
{
	if (pthread_barrier_wait(&ready) == PTHREAD_BARRIER_SERIAL_THREAD) {
		t_start = now_us();
		deadline = t_start + opt_seconds * 1e6;
	}
	pthread_barrier_wait(&ready);
}

struct worker {
	pthread_t t;
	int idx;
	struct lat lat;
	struct lat phase[3]; /* trigger: POST, logs?follow=1, GET */
	long ok, bad;
	char status[256];
};

static void *get_worker(void *arg)
{
	struct worker *w = arg;
	struct http c;
	http_init(&c);
	for (int i = 0; i < 20; i++) /* connect and warm up */
		http_do(&c, "GET", opt_path, NULL);
	start_together();
	while (now_us() < deadline) {
		double t0 = now_us();
		long st = http_do(&c, "GET", opt_path, NULL);
		double t1 = now_us();
		if (st == 200) {
			w->ok++;
			lat_add(&w->lat, t1 - t0);
		} else {
			w->bad++;
		}
	}
	http_free(&c);
	return NULL;
}

static int mode_get(void)
{
	if (!opt_path)
		die("%s", "get needs --path");
	struct worker *w = calloc((size_t)opt_conns, sizeof(*w));
	pthread_barrier_init(&ready, NULL, (unsigned)opt_conns);
	for (int i = 0; i < opt_conns; i++)
		pthread_create(&w[i].t, NULL, get_worker, &w[i]);
	struct lat all = {0};
	long ok = 0, bad = 0;
	for (int i = 0; i < opt_conns; i++) {
		pthread_join(w[i].t, NULL);
		lat_merge(&all, &w[i].lat);
		ok += w[i].ok;
		bad += w[i].bad;
	}
	double rps = (double)ok / ((now_us() - t_start) / 1e6);
	json_t *out =
	    json_pack("{s:s, s:s, s:i, s:I, s:I, s:f, s:o}", "mode", "get", "path", opt_path, "conns", opt_conns, "ok",
	              (json_int_t)ok, "errors", (json_int_t)bad, "rps", rps, "latency", lat_json(&all));
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	return bad ? 1 : 0;
}

/* ---- trigger -> terminal ---- */

static atomic_long remaining;

/* One trigger -> terminal cycle; 0 when the run succeeded. The time each of
 * its three requests took is left in ph[]. */
static int cycle(struct http *c, char *status, size_t stlen, double ph[3])
{
	char path[512], id[256];
	snprintf(path, sizeof(path), "/api/v1/jobs/%s/runs", opt_job);
	double t0 = now_us();
	long st = http_do(c, "POST", path, "{}");
	double t1 = now_us();
	ph[0] = t1 - t0;
	if (st != 201 || !http_field(c, "id", id, sizeof(id))) {
		snprintf(status, stlen, "trigger answered %ld: %.200s", st, c->buf ? c->buf : "");
		return -1;
	}
	snprintf(path, sizeof(path), "/api/v1/runs/%s/logs?follow=1", id);
	st = http_do(c, "GET", path, NULL);
	double t2 = now_us();
	ph[1] = t2 - t1;
	if (st != 200) {
		snprintf(status, stlen, "logs?follow=1 answered %ld", st);
		return -1;
	}
	snprintf(path, sizeof(path), "/api/v1/runs/%s", id);
	st = http_do(c, "GET", path, NULL);
	ph[2] = now_us() - t2;
	if (st != 200 || !http_field(c, "status", status, stlen)) {
		snprintf(status, stlen, "GET run answered %ld", st);
		return -1;
	}
	return strcmp(status, "succeeded") == 0 ? 0 : -1;
}

static void *trigger_worker(void *arg)
{
	struct worker *w = arg;
	struct http c;
	http_init(&c);
	char status[256];
	double ph[3];
	for (int i = 0; i < opt_warmup; i++)
		cycle(&c, status, sizeof(status), ph);
	start_together();
	for (;;) {
		if (opt_count >= 0) {
			if (atomic_fetch_sub(&remaining, 1) <= 0)
				break;
		} else if (now_us() >= deadline) {
			break;
		}
		if (opt_gap_ms > 0)
			usleep((useconds_t)opt_gap_ms * 1000);
		double t0 = now_us();
		int r = cycle(&c, status, sizeof(status), ph);
		double t1 = now_us();
		if (r == 0) {
			w->ok++;
			lat_add(&w->lat, t1 - t0);
			for (int k = 0; k < 3; k++)
				lat_add(&w->phase[k], ph[k]);
		} else {
			if (w->bad++ == 0)
				snprintf(w->status, sizeof(w->status), "%s", status);
		}
	}
	http_free(&c);
	return NULL;
}

static int mode_trigger(void)
{
	if (!opt_job)
		die("%s", "trigger needs --job");
	struct worker *w = calloc((size_t)opt_conns, sizeof(*w));
	atomic_store(&remaining, opt_count);
	pthread_barrier_init(&ready, NULL, (unsigned)opt_conns);
	for (int i = 0; i < opt_conns; i++)
		pthread_create(&w[i].t, NULL, trigger_worker, &w[i]);
	struct lat all = {0}, phase[3] = {{0}};
	long ok = 0, bad = 0;
	const char *first_error = NULL;
	for (int i = 0; i < opt_conns; i++) {
		pthread_join(w[i].t, NULL);
		lat_merge(&all, &w[i].lat);
		for (int k = 0; k < 3; k++)
			lat_merge(&phase[k], &w[i].phase[k]);
		ok += w[i].ok;
		bad += w[i].bad;
		if (w[i].bad && !first_error)
			first_error = w[i].status;
	}
	double el = (now_us() - t_start) / 1e6;
	double per_s = (double)ok / el;
	json_t *out = json_pack("{s:s, s:i, s:I, s:I, s:f, s:f, s:o}", "mode", "trigger", "clients", opt_conns, "ok",
	                        (json_int_t)ok, "errors", (json_int_t)bad, "per_s", per_s, "seconds", el, "latency",
	                        lat_json(&all));
	json_object_set_new(out, "phases",
	                    json_pack("{s:o, s:o, s:o}", "post", lat_json(&phase[0]), "follow", lat_json(&phase[1]),
	                              "get", lat_json(&phase[2])));
	if (first_error)
		json_object_set_new(out, "first_error", json_string(first_error));
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	return bad ? 1 : 0;
}

/* ---- 1,000 in flight ---- */

static char (*ids)[128];
static char (*states)[32];
static atomic_long next_idx;
static long nruns;

struct mem {
	long rss_kb, hwm_kb, threads, fds;
};

static struct mem read_mem(long pid)
{
	struct mem m = {-1, -1, -1, -1};
	if (pid <= 0)
		return m;
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	FILE *f = fopen(path, "r");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "VmRSS:", 6))
				m.rss_kb = atol(line + 6);
			else if (!strncmp(line, "VmHWM:", 6))
				m.hwm_kb = atol(line + 6);
			else if (!strncmp(line, "Threads:", 8))
				m.threads = atol(line + 8);
		}
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
	DIR *d = opendir(path);
	if (d) {
		m.fds = 0;
		for (struct dirent *e; (e = readdir(d));)
			if (e->d_name[0] != '.')
				m.fds++;
		closedir(d);
	}
	return m;
}

static json_t *mem_json(struct mem m)
{
	return json_pack("{s:f, s:f, s:I, s:I}", "rss_mib", m.rss_kb / 1024.0, "hwm_mib", m.hwm_kb / 1024.0, "threads",
	                 (json_int_t)m.threads, "fds", (json_int_t)m.fds);
}

static void *post_worker(void *arg)
{
	struct worker *w = arg;
	struct http c;
	http_init(&c);
	char path[512];
	for (long i; (i = atomic_fetch_add(&next_idx, 1)) < nruns;) {
		double t0 = now_us();
		long st;
		if (w->idx == 0) { /* trigger */
			snprintf(path, sizeof(path), "/api/v1/jobs/%s/runs", opt_job);
			st = http_do(&c, "POST", path, "{}");
			if (st == 201 && http_field(&c, "id", ids[i], sizeof(ids[i]))) {
				w->ok++;
				lat_add(&w->lat, now_us() - t0);
				continue;
			}
		} else { /* cancel */
			snprintf(path, sizeof(path), "/api/v1/runs/%s/cancel", ids[i]);
			st = http_do(&c, "POST", path, "{}");
			if (st == 202) {
				w->ok++;
				lat_add(&w->lat, now_us() - t0);
				continue;
			}
		}
		if (w->bad++ == 0)
			snprintf(w->status, sizeof(w->status), "HTTP %ld: %.40s", st, c.buf ? c.buf : "");
	}
	http_free(&c);
	return NULL;
}

/* Two connections working through all runs; idx 0 triggers, 1 cancels. */
static json_t *post_all(int what, long *bad_out)
{
	struct worker w[2] = {{.idx = what}, {.idx = what}};
	atomic_store(&next_idx, 0);
	double t0 = now_us();
	for (int i = 0; i < 2; i++)
		pthread_create(&w[i].t, NULL, post_worker, &w[i]);
	struct lat all = {0};
	long bad = 0;
	for (int i = 0; i < 2; i++) {
		pthread_join(w[i].t, NULL);
		lat_merge(&all, &w[i].lat);
		bad += w[i].bad;
	}
	json_t *j = json_pack("{s:f, s:I, s:o}", "seconds", (now_us() - t0) / 1e6, "errors", (json_int_t)bad, "latency",
	                      lat_json(&all));
	if (bad)
		json_object_set_new(j, "first_error", json_string(w[0].bad ? w[0].status : w[1].status));
	*bad_out = bad;
	return j;
}

static bool terminal(const char *s)
{
	static const char *t[] = {"succeeded", "failed", "timed_out", "canceled", "rejected", "error", "lost", NULL};
	for (int i = 0; t[i]; i++)
		if (!strcmp(s, t[i]))
			return true;
	return false;
}

/* Poll every run not yet in the wanted state until all are there (or
 * terminal); returns how long it took, or -1 on timeout. */
static double wait_all(struct http *c, bool want_terminal, double since)
{
	char path[512];
	for (;;) {
		long left = 0;
		for (long i = 0; i < nruns; i++) {
			if (!ids[i][0] || terminal(states[i]) || (!want_terminal && !strcmp(states[i], "running")))
				continue;
			snprintf(path, sizeof(path), "/api/v1/runs/%s", ids[i]);
			if (http_do(c, "GET", path, NULL) == 200)
				http_field(c, "status", states[i], sizeof(states[i]));
			if (!terminal(states[i]) && (want_terminal || strcmp(states[i], "running")))
				left++;
		}
		if (!left)
			return (now_us() - since) / 1e6;
		if ((now_us() - since) / 1e6 > opt_timeout)
			return -1;
		usleep(50000);
	}
}

static void *inflight_get_worker(void *arg)
{
	struct worker *w = arg;
	struct http c;
	http_init(&c);
	char path[512];
	unsigned seed = (unsigned)(w->idx * 7919 + 1);
	while (now_us() < deadline) {
		long i = (long)(rand_r(&seed) % (unsigned)nruns);
		snprintf(path, sizeof(path), "/api/v1/runs/%s", ids[i]);
		double t0 = now_us();
		long st = http_do(&c, "GET", path, NULL);
		double t1 = now_us();
		if (st == 200) {
			w->ok++;
			lat_add(&w->lat, t1 - t0);
		} else {
			w->bad++;
		}
	}
	http_free(&c);
	return NULL;
}

static json_t *status_counts(void)
{
	json_t *j = json_object();
	for (long i = 0; i < nruns; i++) {
		const char *s = ids[i][0] ? (states[i][0] ? states[i] : "unknown") : "not_triggered";
		json_object_set_new(j, s, json_integer(json_integer_value(json_object_get(j, s)) + 1));
	}
	return j;
}

static int mode_inflight(void)
{
	if (!opt_job || opt_count <= 0)
		die("%s", "inflight needs --job and --count");
	nruns = opt_count;
	ids = calloc((size_t)nruns, sizeof(*ids));
	states = calloc((size_t)nruns, sizeof(*states));
	json_t *out = json_pack("{s:s, s:I}", "mode", "inflight", "runs", (json_int_t)nruns);
	json_object_set_new(out, "mem_before", mem_json(read_mem(opt_pid)));
	int rc = 0;
	long bad;
	struct http c;
	http_init(&c);

	double t0 = now_us();
	json_object_set_new(out, "trigger", post_all(0, &bad));
	rc |= bad != 0;
	double up = wait_all(&c, false, t0);
	json_object_set_new(out, "all_running_s", json_real(up));
	json_object_set_new(out, "status_when_running", status_counts());
	long running = 0;
	for (long i = 0; i < nruns; i++)
		running += !strcmp(states[i], "running");
	json_object_set_new(out, "running", json_integer(running));
	if (up < 0 || running != nruns)
		rc = 1;

	/* GET /runs/{id} while they all run; the daemon's memory sampled meanwhile. */
	struct mem peak = read_mem(opt_pid);
	struct worker w[2] = {{.idx = 0}, {.idx = 1}};
	deadline = now_us() + opt_seconds * 1e6;
	for (int i = 0; i < 2; i++)
		pthread_create(&w[i].t, NULL, inflight_get_worker, &w[i]);
	while (now_us() < deadline) {
		usleep(200000);
		struct mem m = read_mem(opt_pid);
		if (m.rss_kb > peak.rss_kb)
			peak = m;
	}
	struct lat all = {0};
	long ok = 0;
	bad = 0;
	for (int i = 0; i < 2; i++) {
		pthread_join(w[i].t, NULL);
		lat_merge(&all, &w[i].lat);
		ok += w[i].ok;
		bad += w[i].bad;
	}
	double busy = 0;
	for (size_t i = 0; i < all.n; i++)
		busy += all.v[i];
	json_object_set_new(out, "get",
	                    json_pack("{s:I, s:I, s:f, s:o}", "ok", (json_int_t)ok, "errors", (json_int_t)bad, "rps",
	                              busy > 0 ? (double)ok * 2 / (busy / 1e6) : 0.0, "latency", lat_json(&all)));
	json_object_set_new(out, "mem_running", mem_json(peak));
	rc |= bad != 0;

	double tc = now_us();
	json_object_set_new(out, "cancel", post_all(1, &bad));
	rc |= bad != 0;
	double down = wait_all(&c, true, tc);
	json_object_set_new(out, "all_terminal_s", json_real(down));
	json_object_set_new(out, "status_after_cancel", status_counts());
	if (down < 0)
		rc = 1;
	json_object_set_new(out, "mem_after", mem_json(read_mem(opt_pid)));
	http_free(&c);
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	return rc;
}

/* ---- call ---- */

static int mode_call(int argc, char **argv)
{
	if (argc < 2)
		die("%s", "call needs METHOD PATH [BODY]");
	struct http c;
	http_init(&c);
	long st = http_do(&c, argv[0], argv[1], argc > 2 ? argv[2] : NULL);
	if (st < 200 || st > 299) {
		fprintf(stderr, "client: %s %s answered %ld: %s\n", argv[0], argv[1], st, c.buf ? c.buf : "");
		return 1;
	}
	if (opt_field) {
		char v[1024];
		if (!http_field(&c, opt_field, v, sizeof(v))) {
			fprintf(stderr, "client: no string field '%s' in %s\n", opt_field, c.buf ? c.buf : "");
			return 1;
		}
		puts(v);
	} else {
		fputs(c.buf ? c.buf : "", stdout);
		putchar('\n');
	}
	http_free(&c);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = NULL;
	char *pos[8];
	int npos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (a[0] == '-' && a[1] == '-' && !v)
			die("option %s needs a value", a);
		if (!strcmp(a, "--url"))
			base_url = argv[++i];
		else if (!strcmp(a, "--token"))
			token = argv[++i];
		else if (!strcmp(a, "--path"))
			opt_path = argv[++i];
		else if (!strcmp(a, "--job"))
			opt_job = argv[++i];
		else if (!strcmp(a, "--field"))
			opt_field = argv[++i];
		else if (!strcmp(a, "--conns") || !strcmp(a, "--clients"))
			opt_conns = atoi(argv[++i]);
		else if (!strcmp(a, "--seconds"))
			opt_seconds = atof(argv[++i]);
		else if (!strcmp(a, "--timeout"))
			opt_timeout = atof(argv[++i]);
		else if (!strcmp(a, "--count"))
			opt_count = atol(argv[++i]);
		else if (!strcmp(a, "--warmup"))
			opt_warmup = atoi(argv[++i]);
		else if (!strcmp(a, "--gap-ms"))
			opt_gap_ms = atoi(argv[++i]);
		else if (!strcmp(a, "--pid"))
			opt_pid = atol(argv[++i]);
		else if (a[0] == '-' && a[1] == '-')
			die("unknown option %s", a);
		else if (!mode)
			mode = a;
		else if (npos < 8)
			pos[npos++] = argv[i];
	}
	if (!base_url || !mode)
		die("%s",
		    "usage: client --url URL [--token T] call|get|trigger|inflight ... (see the source's header)");
	if (opt_conns < 1 || opt_conns > 64)
		die("%s", "--conns must be 1..64");
	if (!token)
		token = getenv("UHUB_TOKEN");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc;
	if (!strcmp(mode, "call"))
		rc = mode_call(npos, pos);
	else if (!strcmp(mode, "get"))
		rc = mode_get();
	else if (!strcmp(mode, "trigger"))
		rc = mode_trigger();
	else if (!strcmp(mode, "inflight"))
		rc = mode_inflight();
	else
		die("unknown mode %s", mode);
	fflush(stdout);
	curl_global_cleanup();
	return rc;
}
