/* GET /runs/{id}/logs (SPEC §8): the stored output as text, NDJSON or
 * Server-Sent Events, and ?follow=1 streams until the run has ended.
 *
 * A follower is a libmicrohttpd callback response. When nothing is ready it
 * suspends its connection (a reader returning 0 without suspending
 * busy-loops, PITFALLS "HTTP"). Two things resume it:
 *  - the run's notifier (new output, a new status): the wake-up runs on the
 *    notifier's thread under the notifier's lock, so it never calls into
 *    libmicrohttpd itself; it queues the stream for the API's resumer
 *    thread, which resumes the connection holding none of our locks;
 *  - the resumer's own tick, once a second, for the followers that are due
 *    an SSE heartbeat (every 15 s of silence) or a look at whether their
 *    client is still there (every 5 s).
 * A per-stream mutex makes "nothing to read, suspend" and "wake up" atomic
 * with respect to each other, so no wake-up is lost: the watcher is
 * registered before the first read, and a wake-up that arrives while the
 * reader is busy leaves a flag the reader checks before it suspends. A
 * suspended connection cannot be freed, so a queued stream stays valid
 * until the resumer has resumed it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api/internal.h"
#include "core/notify.h"
#include "core/run.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#define READ_BATCH       (64 * 1024)
#define OUT_MAX          (4u << 20)
#define BLOCK_SIZE       (32 * 1024)
#define HEARTBEAT_US     (15 * 1000000LL)
#define PEER_CHECK_US    (5 * 1000000LL)
#define TICK_US          (1000000LL)
#define FOLLOW_TIMEOUT_S 600

enum log_format { FMT_TEXT, FMT_NDJSON, FMT_SSE };

struct uh_api_stream {
	struct uh_api *api;
	struct MHD_Connection *conn;
	char run_id[UH_ID_MAX];
	enum log_format fmt;
	bool follow;
	int64_t pos; /* byte offset of the next output to send */
	struct uh_buf out;
	size_t out_off;
	struct uh_buf tmp;
	struct uh_utf8 dec[4]; /* per stream: 1 stdout, 2 stderr, 3 uhub */
	bool line_start;       /* text: the last byte sent ended a line */
	bool finished;
	int nchunks;
	int render_rc;
	/* Written by the reader; read by the ticker only while suspended. */
	int64_t last_send_us, last_check_us;
	struct uh_watch *watch;
	/* Guarded by mu. */
	pthread_mutex_t mu;
	bool suspended;
	bool woken;
	/* Registry links (guarded by the API's reg_mu), resume queue link
	 * (guarded by q_mu). */
	struct uh_api_stream *reg_prev, *reg_next;
	bool registered;
	struct uh_api_stream *next_resume;
};

/* ---- rendering ---- */

static int stream_index(int s)
{
	return s == 1 || s == 2 ? s : 3;
}

static void note_text(struct uh_api_stream *ls)
{
	if (ls->out.len)
		ls->line_start = ls->out.data[ls->out.len - 1] == '\n';
}

/* Pending bytes of cut sequences can no longer be completed (a gap, the
 * end): each becomes U+FFFD in its own stream. */
static int flush_pending(struct uh_api_stream *ls, int64_t t, int64_t id)
{
	int rc = 0;
	for (int s = 1; s <= 3 && !rc; s++) {
		if (!ls->dec[s].npend)
			continue;
		if (ls->fmt == FMT_TEXT) {
			rc = uh_utf8_flush(&ls->dec[s], &ls->out);
			note_text(ls);
			continue;
		}
		uh_buf_reset(&ls->tmp);
		if ((rc = uh_utf8_flush(&ls->dec[s], &ls->tmp)))
			break;
		if (ls->fmt == FMT_SSE)
			rc = uh_logfmt_sse(&ls->out, "log", id, ls->tmp.data, ls->tmp.len);
		else
			rc = uh_logfmt_ndjson(&ls->out, t, s, ls->tmp.data, ls->tmp.len);
	}
	return rc;
}

static int render_gap(struct uh_api_stream *ls, int64_t n, int64_t t, int64_t at)
{
	int rc = flush_pending(ls, t, ls->pos);
	if (rc)
		return rc;
	if (ls->fmt == FMT_TEXT) {
		if (!ls->line_start && (rc = uh_buf_append(&ls->out, "\n", 1)))
			return rc;
		rc = uh_logfmt_gap_text(&ls->out, n);
		ls->line_start = true;
		return rc;
	}
	uh_buf_reset(&ls->tmp);
	if ((rc = uh_logfmt_gap_text(&ls->tmp, n)))
		return rc;
	if (ls->fmt == FMT_SSE)
		return uh_logfmt_sse(&ls->out, "log", at, ls->tmp.data, ls->tmp.len);
	return uh_logfmt_ndjson(&ls->out, t, 3, ls->tmp.data, ls->tmp.len);
}

static int render_chunk(struct uh_api_stream *ls, int stream, int64_t t, const char *d, size_t n, int64_t end)
{
	int s = stream_index(stream), rc;
	if (ls->fmt == FMT_TEXT) {
		rc = uh_utf8_feed(&ls->dec[s], d, n, &ls->out);
		note_text(ls);
		return rc;
	}
	uh_buf_reset(&ls->tmp);
	if ((rc = uh_utf8_feed(&ls->dec[s], d, n, &ls->tmp)))
		return rc;
	if (ls->fmt == FMT_SSE)
		return uh_logfmt_sse(&ls->out, "log", end, ls->tmp.data ? ls->tmp.data : "", ls->tmp.len);
	if (!ls->tmp.len)
		return 0;
	return uh_logfmt_ndjson(&ls->out, t, s, ls->tmp.data, ls->tmp.len);
}

static int on_chunk(void *arg, const struct uh_log_chunk *c)
{
	struct uh_api_stream *ls = arg;
	ls->nchunks++;
	if (!c->data || c->offset < 0 || c->offset + (int64_t)c->len <= ls->pos)
		return 0; /* already sent */
	const char *d = c->data;
	size_t n = c->len;
	int64_t off = c->offset;
	if (off < ls->pos) {
		size_t skip = (size_t)(ls->pos - off);
		d += skip;
		n -= skip;
		off = ls->pos;
	}
	int rc = 0;
	if (off > ls->pos)
		rc = render_gap(ls, off - ls->pos, c->t, off);
	if (!rc)
		rc = render_chunk(ls, c->stream, c->t, d, n, off + (int64_t)n);
	ls->pos = off + (int64_t)n;
	if (rc) {
		ls->render_rc = rc;
		return 1;
	}
	return ls->out.len >= READ_BATCH * 4; /* enough for one round */
}

static int finish(struct uh_api_stream *ls, const struct uh_run *run)
{
	int rc = flush_pending(ls, uh_now_us(), ls->pos);
	if (!rc && ls->fmt == FMT_SSE) {
		json_t *j = run ? uh_run_to_json(run) : json_object();
		char *s = uh_json_dump(j);
		json_decref(j);
		rc = s ? uh_logfmt_sse(&ls->out, "end", -1, s, strlen(s)) : UH_E_INTERNAL;
		free(s);
	}
	ls->finished = true;
	return rc;
}

/* Read what is new. -1 on a store fault. */
static int fill(struct uh_api_stream *ls)
{
	struct uh_error err = {0};
	struct uh_run *run = NULL;
	bool terminal = false;
	struct uh_store *store = ls->api->deps.store;
	/* The status is read before the output: a run seen terminal here has
	 * stored all its output, so an empty read after it means the end. */
	if (ls->follow || ls->fmt == FMT_SSE) {
		if (uh_store_run_get(store, ls->run_id, &run, &err)) {
			uh_warn("api: logs of run=%s: %s", ls->run_id, err.message);
			return -1;
		}
		terminal = uh_run_status_terminal(run->status);
	}
	ls->nchunks = 0;
	ls->render_rc = 0;
	int rc = uh_store_log_read(store, ls->run_id, ls->pos, READ_BATCH, on_chunk, ls, &err);
	if (rc || ls->render_rc) {
		uh_warn("api: logs of run=%s: %s", ls->run_id, rc ? err.message : "output too large to render");
		uh_run_free(run);
		return -1;
	}
	if (ls->nchunks == 0 && (!ls->follow || terminal) && finish(ls, run)) {
		uh_run_free(run);
		return -1;
	}
	uh_run_free(run);
	return 0;
}

/* The client went away while we waited (a suspended connection does not
 * notice). Only a plain socket can tell; TLS records look like data. */
static bool peer_gone(struct uh_api_stream *ls)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(ls->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return false;
	char c;
	ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return true;
	return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct uh_api_stream *ls = cls;
	(void)pos;
	for (;;) {
		if (ls->out_off < ls->out.len) {
			size_t n = ls->out.len - ls->out_off;
			if (n > max)
				n = max;
			memcpy(buf, ls->out.data + ls->out_off, n);
			ls->out_off += n;
			ls->last_send_us = uh_mono_us();
			return (ssize_t)n;
		}
		uh_buf_reset(&ls->out);
		ls->out_off = 0;
		if (ls->finished)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (atomic_load(&ls->api->stopping))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (fill(ls) < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (ls->out.len || ls->finished)
			continue;
		/* Following, nothing new, the run goes on. */
		if (ls->fmt == FMT_SSE && uh_mono_us() - ls->last_send_us >= HEARTBEAT_US) {
			uh_buf_appends(&ls->out, ": heartbeat\n\n");
			continue;
		}
		ls->last_check_us = uh_mono_us();
		if (!ls->api->tls && peer_gone(ls))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		pthread_mutex_lock(&ls->mu);
		if (ls->woken) {
			ls->woken = false;
			pthread_mutex_unlock(&ls->mu);
			continue;
		}
		if (atomic_load(&ls->api->stopping)) {
			pthread_mutex_unlock(&ls->mu);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		ls->suspended = true;
		MHD_suspend_connection(ls->conn);
		pthread_mutex_unlock(&ls->mu);
		return 0;
	}
}

/* Queue a suspended stream for the resumer. Called with ls->mu held. */
static void resume_push(struct uh_api *api, struct uh_api_stream *ls)
{
	pthread_mutex_lock(&api->q_mu);
	ls->next_resume = api->resume_head;
	api->resume_head = ls;
	pthread_cond_signal(&api->q_cv);
	pthread_mutex_unlock(&api->q_mu);
}

/* Resume what the wake-ups queued, on the caller's thread, holding none of
 * our locks: the supervisor calls this (uh_notify_flush) right after its
 * wake-ups, so a follower does not wait for the resumer thread to be
 * scheduled. The resumer still takes whatever is queued from elsewhere. */
static void resume_list(struct uh_api_stream *q)
{
	while (q) {
		struct uh_api_stream *n = q->next_resume; /* q may be freed once resumed */
		MHD_resume_connection(q->conn);
		q = n;
	}
}

static void resume_now(void *arg)
{
	struct uh_api *api = arg;
	pthread_mutex_lock(&api->q_mu);
	struct uh_api_stream *q = api->resumer_exit ? NULL : api->resume_head;
	if (q)
		api->resume_head = NULL;
	pthread_mutex_unlock(&api->q_mu);
	resume_list(q);
}

/* The notifier's wake-up: notifier thread, notifier lock held. */
static void on_wake(void *arg)
{
	struct uh_api_stream *ls = arg;
	pthread_mutex_lock(&ls->mu);
	if (ls->suspended) {
		ls->suspended = false;
		resume_push(ls->api, ls);
	} else {
		ls->woken = true;
	}
	pthread_mutex_unlock(&ls->mu);
}

static void registry_add(struct uh_api_stream *ls)
{
	struct uh_api *api = ls->api;
	pthread_mutex_lock(&api->reg_mu);
	ls->reg_prev = NULL;
	ls->reg_next = api->streams;
	if (api->streams)
		api->streams->reg_prev = ls;
	api->streams = ls;
	ls->registered = true;
	pthread_mutex_unlock(&api->reg_mu);
}

static void registry_remove(struct uh_api_stream *ls)
{
	struct uh_api *api = ls->api;
	if (!ls->registered)
		return;
	pthread_mutex_lock(&api->reg_mu);
	if (ls->reg_prev)
		ls->reg_prev->reg_next = ls->reg_next;
	else
		api->streams = ls->reg_next;
	if (ls->reg_next)
		ls->reg_next->reg_prev = ls->reg_prev;
	ls->registered = false;
	pthread_mutex_unlock(&api->reg_mu);
}

static void free_stream(void *cls)
{
	struct uh_api_stream *ls = cls;
	/* After these the ticker cannot see it and the wake-up is not
	 * running and never will. */
	registry_remove(ls);
	uh_notify_unwatch(ls->watch);
	uh_buf_free(&ls->out);
	uh_buf_free(&ls->tmp);
	pthread_mutex_destroy(&ls->mu);
	free(ls);
}

static int parse_offset(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	if (n == 0 || n > 18)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int uh_h_run_logs(struct uh_api_req *r, struct uh_error *err)
{
	bool follow = false, follow_given = false;
	const char *f = uh_api_query(r, "follow");
	int rc;
	if (f) {
		follow_given = true;
		if ((rc = uh_api_parse_bool(f, "follow", &follow, err)))
			return rc;
	}
	enum log_format fmt = FMT_TEXT;
	const char *format = uh_api_query(r, "format");
	const char *accept = uh_api_header(r, "Accept");
	if (format) {
		if (!strcmp(format, "ndjson"))
			fmt = FMT_NDJSON;
		else if (strcmp(format, "text") != 0)
			return uh_error_set(err, UH_E_INVALID_REQUEST, "format", "'format' must be text or ndjson");
	} else if (accept && strstr(accept, "text/event-stream")) {
		fmt = FMT_SSE;
		if (!follow_given)
			follow = true; /* an event stream follows unless told not to */
	}
	int64_t pos = 0;
	const char *last = uh_api_header(r, "Last-Event-ID");
	if (fmt == FMT_SSE && last && *last && parse_offset(last, &pos))
		return uh_error_set(err, UH_E_INVALID_REQUEST, "Last-Event-ID",
		                    "'Last-Event-ID' must be a byte offset this stream sent");
	if (follow && atomic_load(&r->api->stopping))
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "the daemon is shutting down");

	struct uh_api_stream *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	ls->api = r->api;
	ls->conn = r->conn;
	snprintf(ls->run_id, sizeof(ls->run_id), "%s", r->run->id);
	ls->fmt = fmt;
	ls->follow = follow;
	ls->pos = pos;
	ls->line_start = true;
	ls->last_send_us = ls->last_check_us = uh_mono_us();
	uh_buf_init(&ls->out, OUT_MAX);
	uh_buf_init(&ls->tmp, OUT_MAX);
	pthread_mutex_init(&ls->mu, NULL);
	if (follow) {
		if (!(ls->watch = uh_notify_watch(ls->run_id, on_wake, ls))) {
			free_stream(ls);
			return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
		}
		registry_add(ls);
	}
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK_SIZE, reader, ls, free_stream);
	if (!resp) {
		free_stream(ls);
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot create the response");
	}
	const char *ct = fmt == FMT_SSE      ? "text/event-stream; charset=utf-8"
	                 : fmt == FMT_NDJSON ? "application/x-ndjson"
	                                     : "text/plain; charset=utf-8";
	MHD_add_response_header(resp, "Content-Type", ct);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (fmt == FMT_SSE)
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	if (follow)
		MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int)FOLLOW_TIMEOUT_S);
	r->resp = resp;
	r->status = 200;
	return 0;
}

/* Whether a suspended follower should be woken by the tick. Called with
 * ls->mu held and ls suspended, so its reader is not running. */
static bool tick_due(const struct uh_api_stream *ls, int64_t now)
{
	if (ls->fmt == FMT_SSE && now - ls->last_send_us >= HEARTBEAT_US)
		return true;
	return now - ls->last_check_us >= PEER_CHECK_US;
}

static void tick(struct uh_api *api)
{
	int64_t now = uh_mono_us();
	pthread_mutex_lock(&api->reg_mu);
	for (struct uh_api_stream *ls = api->streams; ls; ls = ls->reg_next) {
		pthread_mutex_lock(&ls->mu);
		if (ls->suspended && tick_due(ls, now)) {
			ls->suspended = false;
			resume_push(api, ls);
		}
		pthread_mutex_unlock(&ls->mu);
	}
	pthread_mutex_unlock(&api->reg_mu);
}

/* The resumer thread: resumes the queued connections holding none of our
 * locks, and ticks. On exit it drains the queue, so no connection stays
 * suspended when libmicrohttpd stops. */
static void *resumer(void *arg)
{
	struct uh_api *api = arg;
	int64_t next_tick = uh_mono_us() + TICK_US;
	pthread_mutex_lock(&api->q_mu);
	for (;;) {
		while (!api->resume_head && !api->resumer_exit) {
			int64_t now = uh_mono_us();
			if (now >= next_tick)
				break;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			int64_t wait = next_tick - now;
			ts.tv_sec += (time_t)(wait / 1000000);
			ts.tv_nsec += (long)(wait % 1000000) * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&api->q_cv, &api->q_mu, &ts);
		}
		struct uh_api_stream *q = api->resume_head;
		api->resume_head = NULL;
		bool exiting = api->resumer_exit;
		pthread_mutex_unlock(&api->q_mu);
		resume_list(q);
		if (!exiting && uh_mono_us() >= next_tick) {
			tick(api);
			next_tick = uh_mono_us() + TICK_US;
		}
		pthread_mutex_lock(&api->q_mu);
		if (exiting && !api->resume_head)
			break;
	}
	pthread_mutex_unlock(&api->q_mu);
	return NULL;
}

int uh_api_logs_start(struct uh_api *api, struct uh_error *err)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&api->q_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&api->q_mu, NULL);
	pthread_mutex_init(&api->reg_mu, NULL);
	api->sync_ready = true;
	if (pthread_create(&api->resumer, NULL, resumer, api) != 0)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot start the log followers' thread");
	api->resumer_started = true;
	uh_notify_set_flush(resume_now, api);
	return 0;
}

void uh_api_logs_stop(struct uh_api *api)
{
	if (!api->sync_ready)
		return;
	uh_notify_set_flush(NULL, NULL);
	/* `stopping` is set: every follower wakes, sees it and ends; the
	 * suspended ones are queued for the resumer, which drains and exits. */
	pthread_mutex_lock(&api->reg_mu);
	for (struct uh_api_stream *ls = api->streams; ls; ls = ls->reg_next)
		on_wake(ls);
	pthread_mutex_unlock(&api->reg_mu);
	pthread_mutex_lock(&api->q_mu);
	api->resumer_exit = true;
	pthread_cond_signal(&api->q_cv);
	pthread_mutex_unlock(&api->q_mu);
	if (api->resumer_started)
		pthread_join(api->resumer, NULL);
	api->resumer_started = false;
}

void uh_api_logs_free(struct uh_api *api)
{
	if (!api->sync_ready)
		return;
	pthread_cond_destroy(&api->q_cv);
	pthread_mutex_destroy(&api->q_mu);
	pthread_mutex_destroy(&api->reg_mu);
	api->sync_ready = false;
}
