/* The supervisor (see supervisor.h).
 *
 * Everything here runs on the loop's thread, except uh_supervisor_kick and
 * uh_supervisor_cancel which only queue a request and wake the loop. Output
 * is appended to an in-memory batch and written to the store in one
 * transaction every FLUSH_MS (or sooner when the batch is large); followers
 * are woken after each write. A run's output past logs.max_bytes_per_run
 * keeps its head and its tail: tail chunks beyond the budget are dropped
 * oldest first, which readers show as "[uhub: N bytes omitted]". */
#include "daemon/supervisor.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "backend/backend.h"
#include "core/jobspec.h"
#include "core/metrics.h"
#include "core/notify.h"
#include "core/run.h"
#include "daemon/guard.h"
#include "daemon/retention.h"
#include "daemon/retry.h"
#include "daemon/secrets.h"
#include "secret/mask.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#define FLUSH_MS        15
#define BATCH_MAX_BYTES (1u << 20)
#define DISPATCH_BATCH  256
#define CHUNK_MAX       (64 * 1024)

enum stop_reason { STOP_NONE = 0, STOP_CANCEL, STOP_TIMEOUT, STOP_SHUTDOWN };

struct tail_range {
	int64_t from, to;
};

struct active {
	struct uh_supervisor *sup;
	struct active *next_in_bucket;
	struct uh_run *run;
	struct uh_run_handle *h;
	uv_timer_t timeout;
	bool timer_live;
	unsigned fds;      /* its share of the descriptor budget */
	int64_t timeout_s; /* as started */
	enum stop_reason stop;
	int64_t offset; /* bytes of output seen so far */
	int64_t head_max, tail_max;
	struct tail_range *tail; /* FIFO of stored tail ranges */
	size_t tail_head, tail_len, tail_cap;
	int64_t tail_bytes;
	bool truncated;
	/* Secrets: resolved on a worker (Vault is a network call) while the run
	 * stays queued; the masker lives as long as the run. */
	uv_work_t work;
	bool resolving;
	struct uh_run_secrets *secrets;
	int resolve_rc;
	char *resolve_msg; /* why they could not be (kept only then) */
	struct uh_masker *mask;
	struct uh_buf masked;
};

struct pending_chunk {
	char run_id[UH_ID_MAX];
	int64_t offset, t;
	int stream;
	char *data;
	size_t len;
};

struct pending_drop {
	char run_id[UH_ID_MAX];
	int64_t from, to;
};

struct request {
	struct request *next;
	char run_id[UH_ID_MAX];
};

#define NBUCKETS 4096

/* Runs in flight per job and per project, for max_concurrent. */
struct slot_count {
	struct slot_count *next;
	char key[UH_ID_MAX];
	int n;
};

/* A run that ended while the store refused its terminal transition (disk
 * full, I/O error): retried from the poll timer, so the run does not stay
 * `running` until a restart settles it `lost`. */
struct unfinished {
	struct unfinished *next;
	char run_id[64];
	struct uh_run_update u;
	char reason[64];
	char msg[320];
};

struct uh_supervisor {
	uv_loop_t *loop;
	struct uh_store *store;
	const struct uh_config *cfg;
	uv_async_t wake;
	uv_timer_t flush_timer;
	uv_timer_t drain_timer;
	uv_timer_t poll_timer;
	uv_timer_t retry_timer; /* the next delayed retry falls due */
	struct uh_retention *retention;
	struct active *buckets[NBUCKETS];
	size_t n_active;
	struct slot_count *slots[NBUCKETS];
	bool waiting_for_slot; /* a queued run is held back by max_concurrent */
	size_t fds_max;        /* descriptors runs in flight may hold (fd_budget) */
	size_t fds_active;     /* ... and hold, by their backends' fds_per_run */
	bool fd_cap_said;

	pthread_mutex_t lock; /* guards kicked and cancels */
	bool kicked;
	struct request *cancels;

	struct pending_chunk *chunks;
	size_t n_chunks, cap_chunks, batch_bytes;
	struct pending_drop *drops;
	size_t n_drops, cap_drops;
	bool flush_armed;
	struct unfinished *unfinished; /* terminal transitions the store refused */

	bool draining;
	void (*drain_done)(void *arg);
	void *drain_arg;

	struct uh_backend_host host;
	struct uh_vault *vault; /* NULL: no Vault configured */
};

/* ---- active runs by id ---- */

static unsigned hash_id(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NBUCKETS;
}

static struct slot_count **slot_find(struct uh_supervisor *s, const char *key)
{
	struct slot_count **p = &s->slots[hash_id(key)];
	while (*p && strcmp((*p)->key, key) != 0)
		p = &(*p)->next;
	return p;
}

static int slot_get(struct uh_supervisor *s, const char *key)
{
	struct slot_count **p = slot_find(s, key);
	return *p ? (*p)->n : 0;
}

static void slot_add(struct uh_supervisor *s, const char *key, int delta)
{
	struct slot_count **p = slot_find(s, key);
	if (!*p) {
		if (delta <= 0 || !(*p = calloc(1, sizeof(**p))))
			return;
		snprintf((*p)->key, sizeof((*p)->key), "%s", key);
	}
	(*p)->n += delta;
	if ((*p)->n <= 0) {
		struct slot_count *dead = *p;
		*p = dead->next;
		free(dead);
	}
}

static struct active *find_active(struct uh_supervisor *s, const char *id)
{
	for (struct active *a = s->buckets[hash_id(id)]; a; a = a->next_in_bucket)
		if (strcmp(a->run->id, id) == 0)
			return a;
	return NULL;
}

/* Descriptors a run of this backend holds in flight. */
static unsigned run_fds(const struct uh_run *run)
{
	const struct uh_backend_ops *ops = uh_backend_find(run->backend);
	return ops && ops->fds_per_run ? ops->fds_per_run : UH_BACKEND_FDS_DEFAULT;
}

static void add_active(struct uh_supervisor *s, struct active *a)
{
	unsigned b = hash_id(a->run->id);
	a->next_in_bucket = s->buckets[b];
	s->buckets[b] = a;
	s->n_active++;
	a->fds = run_fds(a->run);
	s->fds_active += a->fds;
	slot_add(s, a->run->job_id, 1);
	slot_add(s, a->run->project_id, 1);
}

static void remove_active(struct uh_supervisor *s, struct active *a)
{
	for (struct active **p = &s->buckets[hash_id(a->run->id)]; *p; p = &(*p)->next_in_bucket)
		if (*p == a) {
			*p = a->next_in_bucket;
			s->n_active--;
			s->fds_active -= a->fds;
			slot_add(s, a->run->job_id, -1);
			slot_add(s, a->run->project_id, -1);
			return;
		}
}

/* ---- log batching ---- */

static void flush(struct uh_supervisor *s);

static void flush_cb(uv_timer_t *t)
{
	struct uh_supervisor *s = t->data;
	s->flush_armed = false;
	flush(s);
}

static void arm_flush(struct uh_supervisor *s)
{
	if (s->flush_armed)
		return;
	s->flush_armed = true;
	uv_timer_start(&s->flush_timer, flush_cb, FLUSH_MS, 0);
}

static int push_chunk(struct uh_supervisor *s, const char *run_id, int64_t offset, int stream, const char *data,
                      size_t len, bool may_merge)
{
	/* Small writes coalesce into the previous chunk of the same stream. */
	if (may_merge && s->n_chunks) {
		struct pending_chunk *p = &s->chunks[s->n_chunks - 1];
		if (p->stream == stream && p->offset + (int64_t)p->len == offset && p->len + len <= CHUNK_MAX &&
		    strcmp(p->run_id, run_id) == 0) {
			char *n = realloc(p->data, p->len + len);
			if (!n)
				return -1;
			memcpy(n + p->len, data, len);
			p->data = n;
			p->len += len;
			s->batch_bytes += len;
			return 0;
		}
	}
	if (s->n_chunks == s->cap_chunks) {
		size_t cap = s->cap_chunks ? s->cap_chunks * 2 : 64;
		struct pending_chunk *n = realloc(s->chunks, cap * sizeof(*n));
		if (!n)
			return -1;
		s->chunks = n;
		s->cap_chunks = cap;
	}
	struct pending_chunk *c = &s->chunks[s->n_chunks];
	c->data = malloc(len ? len : 1);
	if (!c->data)
		return -1;
	memcpy(c->data, data, len);
	snprintf(c->run_id, sizeof(c->run_id), "%s", run_id);
	c->offset = offset;
	c->t = uh_now_us();
	c->stream = stream;
	c->len = len;
	s->n_chunks++;
	s->batch_bytes += len;
	return 0;
}

static int push_drop(struct uh_supervisor *s, const char *run_id, int64_t from, int64_t to)
{
	if (s->n_drops == s->cap_drops) {
		size_t cap = s->cap_drops ? s->cap_drops * 2 : 16;
		struct pending_drop *n = realloc(s->drops, cap * sizeof(*n));
		if (!n)
			return -1;
		s->drops = n;
		s->cap_drops = cap;
	}
	struct pending_drop *d = &s->drops[s->n_drops++];
	snprintf(d->run_id, sizeof(d->run_id), "%s", run_id);
	d->from = from;
	d->to = to;
	return 0;
}

static void flush(struct uh_supervisor *s)
{
	if (!s->n_chunks && !s->n_drops)
		return;
	struct uh_log_chunk *cs = calloc(s->n_chunks ? s->n_chunks : 1, sizeof(*cs));
	struct uh_log_drop *ds = calloc(s->n_drops ? s->n_drops : 1, sizeof(*ds));
	if (!cs || !ds) {
		free(cs);
		free(ds);
		uh_errorf("out of memory writing run output; retrying");
		arm_flush(s);
		return;
	}
	for (size_t i = 0; i < s->n_chunks; i++)
		cs[i] = (struct uh_log_chunk){s->chunks[i].run_id, s->chunks[i].offset, s->chunks[i].t,
		                              s->chunks[i].stream, s->chunks[i].data,   s->chunks[i].len};
	for (size_t i = 0; i < s->n_drops; i++)
		ds[i] = (struct uh_log_drop){s->drops[i].run_id, s->drops[i].from, s->drops[i].to};
	struct uh_error err = {0};
	int r = uh_store_log_write(s->store, cs, s->n_chunks, ds, s->n_drops, &err);
	free(cs);
	free(ds);
	if (r) {
		/* Keep the batch and try again: output is never dropped silently. */
		uh_errorf("writing run output failed, will retry: %s", err.message);
		arm_flush(s);
		return;
	}
	/* Wake followers once per run touched. */
	const char *last = "";
	for (size_t i = 0; i < s->n_chunks; i++) {
		if (strcmp(last, s->chunks[i].run_id) != 0) {
			uh_notify_run(s->chunks[i].run_id);
			last = s->chunks[i].run_id;
		}
		free(s->chunks[i].data);
	}
	s->n_chunks = 0;
	s->n_drops = 0;
	s->batch_bytes = 0;
	uh_notify_flush();
}

/* Returns true when the bytes joined the last range (so they may join its
 * pending chunk too). */
static bool tail_push(struct active *a, int64_t from, int64_t to)
{
	/* Adjacent ranges merge while small against the tail budget, so the
	 * window can slide by steps of at most 1/8 of it. */
	int64_t merge = a->tail_max / 8 < CHUNK_MAX ? a->tail_max / 8 : CHUNK_MAX;
	if (a->tail_len) {
		struct tail_range *last = &a->tail[(a->tail_head + a->tail_len - 1) % a->tail_cap];
		if (last->to == from && to - last->from <= merge) {
			last->to = to;
			return true;
		}
	}
	if (a->tail_len == a->tail_cap) {
		size_t cap = a->tail_cap ? a->tail_cap * 2 : 16;
		struct tail_range *n = malloc(cap * sizeof(*n));
		if (!n)
			return false;
		for (size_t i = 0; i < a->tail_len; i++)
			n[i] = a->tail[(a->tail_head + i) % a->tail_cap];
		free(a->tail);
		a->tail = n;
		a->tail_cap = cap;
		a->tail_head = 0;
	}
	a->tail[(a->tail_head + a->tail_len) % a->tail_cap] = (struct tail_range){from, to};
	a->tail_len++;
	return false;
}

static void store_output(struct active *a, enum uh_stream stream, const char *data, size_t len)
{
	struct uh_supervisor *s = a->sup;
	while (len) {
		int64_t off = a->offset;
		size_t take = len;
		bool head = off < a->head_max;
		if (head && (int64_t)take > a->head_max - off)
			take = (size_t)(a->head_max - off);
		if (!head && (int64_t)take > a->tail_max) {
			/* One write larger than the whole tail: only its end is kept. */
			size_t skip = take - (size_t)a->tail_max;
			a->offset += (int64_t)skip;
			data += skip;
			len -= skip;
			take -= skip;
			off = a->offset;
			a->truncated = true;
		}
		/* Drops delete whole chunks by their offset, so a tail chunk only
		 * grows within its tail range, and never into the head. */
		bool same_range = !head && tail_push(a, off, off + (int64_t)take);
		push_chunk(s, a->run->id, off, (int)stream, data, take, head || same_range);
		if (!head) {
			a->tail_bytes += (int64_t)take;
			while (a->tail_bytes > a->tail_max && a->tail_len > 0) {
				struct tail_range *old = &a->tail[a->tail_head];
				push_drop(s, a->run->id, old->from, old->to);
				a->tail_bytes -= old->to - old->from;
				a->tail_head = (a->tail_head + 1) % a->tail_cap;
				a->tail_len--;
				a->truncated = true;
			}
		}
		a->offset += (int64_t)take;
		data += take;
		len -= take;
	}
	if (s->batch_bytes >= BATCH_MAX_BYTES)
		flush(s);
	else
		arm_flush(s);
}

/* Output goes through the run's masker (when it has secrets) before it is
 * stored or streamed. */
static void on_output(struct uh_run_handle *h, enum uh_stream stream, const char *data, size_t len)
{
	struct active *a = h->host_data;
	if (!a->mask) {
		store_output(a, stream, data, len);
		return;
	}
	a->masked.len = 0;
	if (uh_masker_feed(a->mask, (int)stream, data, len, &a->masked)) {
		static const char lost[] = "\n[uhub: output could not be masked and was dropped]\n";
		store_output(a, UH_STREAM_SYSTEM, lost, sizeof(lost) - 1);
		return;
	}
	if (a->masked.len)
		store_output(a, stream, a->masked.data, a->masked.len);
}

/* What the masker still holds back, at the end of the run. */
static void flush_masker(struct active *a)
{
	if (!a->mask)
		return;
	for (int st = UH_STREAM_STDOUT; st <= UH_STREAM_SYSTEM; st++) {
		a->masked.len = 0;
		if (uh_masker_flush(a->mask, st, &a->masked) == 0 && a->masked.len)
			store_output(a, (enum uh_stream)st, a->masked.data, a->masked.len);
	}
}

static void on_persist(struct uh_run_handle *h)
{
	struct active *a = h->host_data;
	struct uh_error err = {0};
	if (uh_store_run_set_external_id(a->sup->store, a->run->id, h->external_id, &err))
		uh_errorf("run=%s job=%s backend=%s cannot record its handle: %s", a->run->id, a->run->job_id,
		          a->run->backend, err.message);
}

/* ---- finishing ---- */

static void active_free(struct active *a)
{
	uh_run_secrets_free(a->secrets);
	uh_masker_free(a->mask);
	uh_buf_free(&a->masked);
	free(a->tail);
	free(a->resolve_msg);
	uh_run_free(a->run);
	free(a);
}

static void timer_closed(uv_handle_t *t)
{
	active_free(t->data);
}

static void maybe_drain_done(struct uh_supervisor *s)
{
	if (s->draining && s->n_active == 0 && s->drain_done) {
		void (*done)(void *) = s->drain_done;
		s->drain_done = NULL;
		uv_timer_stop(&s->drain_timer);
		done(s->drain_arg);
	}
}

static void finish_active(struct active *a)
{
	struct uh_supervisor *s = a->sup;
	remove_active(s, a);
	if (a->h) {
		uh_backend_release(a->h);
		a->h = NULL;
	}
	if (a->timer_live) {
		uv_timer_stop(&a->timeout);
		a->timeout.data = a;
		uv_close((uv_handle_t *)&a->timeout, timer_closed);
	} else {
		active_free(a);
	}
	maybe_drain_done(s);
	if (s->waiting_for_slot && !s->draining)
		uh_supervisor_kick(s); /* a slot was freed */
}

/* A run that ended error or lost gets its retry (retry.h), stored queued
 * with its not_before; dispatch starts it when due. */
static void schedule_retry(struct uh_supervisor *s, const struct uh_run *run)
{
	struct uh_run *next = uh_retry_next(run, uh_now_us());
	if (!next)
		return;
	json_t *details = json_pack("{s:s,s:s,s:s,s:I,s:I}", "job_id", next->job_id, "project_id", next->project_id,
	                            "retry_of", run->id, "attempt", (json_int_t)uh_retry_attempt(next), "not_before",
	                            (json_int_t)uh_retry_not_before(next));
	struct uh_audit_in a = {"system", "run.retry", next->id, details};
	struct uh_run *existing = NULL;
	struct uh_error err = {0};
	if (uh_store_run_create(s->store, next, NULL, NULL, NULL, &a, &existing, &err))
		uh_errorf("run=%s job=%s backend=%s cannot queue its retry: %s", run->id, run->job_id,
		          run->backend ? run->backend : "", err.message);
	else
		uh_info("run=%s job=%s backend=%s retry %s queued (attempt %" PRId64 ")", run->id, run->job_id,
		        run->backend ? run->backend : "", next->id, uh_retry_attempt(next));
	uh_run_free(existing);
	uh_run_free(next);
	json_decref(details);
	if (!s->draining)
		uh_supervisor_kick(s);
}

static int run_transition(struct uh_supervisor *s, struct uh_run *run, const struct uh_run_update *u,
                          const char *action)
{
	json_t *details = json_pack("{s:s,s:s,s:s?,s:s?}", "from", uh_run_status_name(u->from), "to",
	                            uh_run_status_name(u->to), "reason", u->reason, "backend", run->backend);
	struct uh_audit_in a = {"system", action, run->id, details};
	struct uh_error err = {0};
	int rc = uh_store_run_transition(s->store, run->id, u, &a, &err);
	if (rc)
		uh_errorf("run=%s job=%s backend=%s transition %s -> %s failed: %s", run->id, run->job_id,
		          run->backend ? run->backend : "", uh_run_status_name(u->from), uh_run_status_name(u->to),
		          err.message);
	else
		run->status = u->to;
	json_decref(details);
	uh_notify_run(run->id);
	uh_notify_flush();
	if (run->status == u->to && (u->to == UH_RUN_ERROR || u->to == UH_RUN_LOST))
		schedule_retry(s, run);
	return rc;
}

/* Keep a run's terminal transition for later (see struct unfinished). */
static void keep_unfinished(struct uh_supervisor *s, const struct uh_run *run, const struct uh_run_update *u)
{
	struct unfinished *x = calloc(1, sizeof(*x));
	if (!x) {
		uh_errorf("run=%s job=%s backend=%s out of memory keeping its end", run->id, run->job_id, run->backend);
		return;
	}
	snprintf(x->run_id, sizeof(x->run_id), "%s", run->id);
	x->u = *u;
	snprintf(x->reason, sizeof(x->reason), "%s", u->reason ? u->reason : "");
	snprintf(x->msg, sizeof(x->msg), "%s", u->message ? u->message : "");
	x->u.reason = u->reason ? x->reason : NULL;
	x->u.message = u->message ? x->msg : NULL;
	x->next = s->unfinished;
	s->unfinished = x;
}

/* Retry the kept transitions once the output batch is stored (output
 * before the terminal status). A run no longer `running` is dropped. */
static void retry_unfinished(struct uh_supervisor *s)
{
	if (!s->unfinished)
		return;
	flush(s);
	if (s->n_chunks || s->n_drops)
		return;
	for (struct unfinished **p = &s->unfinished; *p;) {
		struct unfinished *x = *p;
		struct uh_run *run = NULL;
		struct uh_error err = {0};
		int rc = uh_store_run_get(s->store, x->run_id, &run, &err);
		if (!rc && run->status == UH_RUN_RUNNING)
			rc = run_transition(s, run, &x->u, "run.finish");
		uh_run_free(run);
		if (rc && rc != UH_E_CONFLICT && rc != UH_E_NOT_FOUND) {
			p = &x->next;
			continue;
		}
		*p = x->next;
		free(x);
	}
}

static void on_finished(struct uh_run_handle *h, const struct uh_run_result *res)
{
	struct active *a = h->host_data;
	struct uh_supervisor *s = a->sup;
	char msg[320];
	struct uh_run_update u = {.from = UH_RUN_RUNNING, .finished_at = uh_now_us()};
	if (res->kind == UH_RESULT_EXITED) {
		u.set_exit_code = true;
		u.exit_code = res->exit_code;
	} else if (res->kind == UH_RESULT_SIGNALED) {
		u.set_exit_code = true;
		u.exit_code = 128 + res->signal;
	}
	if (a->stop == STOP_CANCEL || a->stop == STOP_SHUTDOWN) {
		u.to = UH_RUN_CANCELED;
		u.reason = a->stop == STOP_CANCEL ? "canceled" : "shutdown";
		snprintf(msg, sizeof(msg), a->stop == STOP_CANCEL ? "canceled on request" : "canceled: uhub shut down");
	} else if (a->stop == STOP_TIMEOUT) {
		u.to = UH_RUN_TIMED_OUT;
		u.reason = "timeout";
		snprintf(msg, sizeof(msg), "stopped after timeout_seconds=%" PRId64, a->timeout_s);
	} else if (res->kind == UH_RESULT_ERROR) {
		u.to = UH_RUN_ERROR;
		u.reason = res->reason ? res->reason : "backend_error";
		snprintf(msg, sizeof(msg), "%s", res->message[0] ? res->message : "the backend failed");
	} else if (res->oom) {
		u.to = UH_RUN_FAILED;
		u.reason = "oom";
		snprintf(msg, sizeof(msg), "killed by the memory limit");
	} else if (res->kind == UH_RESULT_EXITED || res->kind == UH_RESULT_REMOTE_OK ||
	           res->kind == UH_RESULT_REMOTE_FAIL) {
		bool ok = res->kind == UH_RESULT_REMOTE_OK || (res->kind == UH_RESULT_EXITED && res->exit_code == 0);
		u.to = ok ? UH_RUN_SUCCEEDED : UH_RUN_FAILED;
		u.reason = ok ? NULL : "exit_code";
		if (res->kind == UH_RESULT_EXITED)
			snprintf(msg, sizeof(msg), "exited with status %d", res->exit_code);
		else
			snprintf(msg, sizeof(msg), "%s", res->message[0] ? res->message : "remote job ended");
	} else {
		u.to = UH_RUN_FAILED;
		u.reason = "signal";
		snprintf(msg, sizeof(msg), "killed by signal %d", res->signal);
	}
	u.message = msg;
	flush_masker(a);
	u.log_truncated = a->truncated;
	flush(s); /* all output stored before the run turns terminal */
	int rc = run_transition(s, a->run, &u, "run.finish");
	if (rc && rc != UH_E_CONFLICT)
		keep_unfinished(s, a->run, &u);
	uh_info("run=%s job=%s backend=%s finished: %s%s%s", a->run->id, a->run->job_id, a->run->backend,
	        uh_run_status_name(u.to), u.reason ? " " : "", u.reason ? u.reason : "");
	finish_active(a);
}

/* ---- stopping ---- */

static int64_t grace_ms(struct uh_supervisor *s)
{
	return s->cfg->local.grace_s * 1000;
}

static void stop_active(struct active *a, enum stop_reason why, int64_t grace)
{
	if (a->stop == STOP_NONE || why == STOP_SHUTDOWN)
		a->stop = a->stop == STOP_NONE ? why : a->stop;
	if (a->h)
		uh_backend_stop(a->h, grace);
}

static void timeout_cb(uv_timer_t *t)
{
	struct active *a = t->data;
	uh_info("run=%s job=%s backend=%s timed out", a->run->id, a->run->job_id, a->run->backend);
	stop_active(a, STOP_TIMEOUT, grace_ms(a->sup));
}

/* ---- dispatch ---- */

static void end_before_start(struct uh_supervisor *s, struct uh_run *run, int from, int to, const char *reason,
                             const char *message)
{
	struct uh_run_update u = {
	    .from = from, .to = to, .reason = reason, .message = message, .finished_at = uh_now_us()};
	run_transition(s, run, &u, "run.finish");
}

/* Whether max_concurrent (the job's, then the project's) holds the run back. */
static bool at_limit(struct uh_supervisor *s, const struct uh_run *run)
{
	json_t *j = json_object_get(run->spec, "max_concurrent");
	json_t *p = json_object_get(run->spec, "project_max_concurrent");
	if (json_is_integer(j) && slot_get(s, run->job_id) >= json_integer_value(j))
		return true;
	return json_is_integer(p) && slot_get(s, run->project_id) >= json_integer_value(p);
}

/* A started run keeps what its end needs (ids, backend, status): its
 * snapshot (command, env, parameters, effective config, comments) goes,
 * unless an automatic retry will copy it (uh_retry_next). The backends copy
 * what they keep at start. About 2.5 KB a run: 25 MiB with 10,000 in flight. */
static void run_slim(struct uh_run *run)
{
	json_t *rv = json_object_get(run->spec, "retries");
	if (json_is_integer(rv) && json_integer_value(rv) > uh_retry_attempt(run))
		return;
	json_t **js[] = {&run->parameters, &run->comments, &run->spec, &run->effective_config};
	for (size_t i = 0; i < sizeof(js) / sizeof(js[0]); i++) {
		json_decref(*js[i]);
		*js[i] = NULL;
	}
}

static void resolve_work(uv_work_t *w);
static void resolve_done(uv_work_t *w, int status);
static void start_run(struct uh_supervisor *s, struct active *a, const struct uh_backend_ops *ops);

/* The record of a run being started or taken over (owns `run`). */
static struct active *active_new(struct uh_supervisor *s, struct uh_run *run)
{
	struct active *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->sup = s;
	a->run = run;
	a->head_max = s->cfg->log_max_bytes / 2;
	a->tail_max = s->cfg->log_max_bytes - a->head_max;
	uh_buf_init(&a->masked, 64u << 20);
	return a;
}

static void dispatch_one(struct uh_supervisor *s, struct uh_run *run)
{
	struct uh_error err = {0};
	if (run->cancel_requested) {
		end_before_start(s, run, UH_RUN_QUEUED, UH_RUN_CANCELED, "canceled", "canceled before it started");
		uh_run_free(run);
		return;
	}
	enum uh_guard_verdict v = uh_guard_dispatch_check(s->store, s->cfg, run, &err);
	if (v == UH_GUARD_REJECT)
		end_before_start(s, run, UH_RUN_QUEUED, UH_RUN_REJECTED, err.field[0] ? err.field : "exception_revoked",
		                 err.message);
	if (v != UH_GUARD_GO) {
		uh_run_free(run);
		return;
	}
	const struct uh_backend_ops *ops = uh_backend_find(run->backend);
	if (!ops) {
		end_before_start(s, run, UH_RUN_QUEUED, UH_RUN_ERROR, "backend_unavailable",
		                 "the execution backend is not built in this uhub");
		uh_run_free(run);
		return;
	}
	struct active *a = active_new(s, run);
	if (!a) {
		uh_run_free(run);
		return;
	}

	if (uh_run_needs_secrets(json_object_get(run->spec, "secrets"), run->effective_config)) {
		/* Resolved on a worker; the run holds its slot and stays queued
		 * until its secrets are in hand. */
		a->resolving = true;
		add_active(s, a);
		a->work.data = a;
		if (uv_queue_work(s->loop, &a->work, resolve_work, resolve_done) != 0) {
			a->resolving = false;
			end_before_start(s, run, UH_RUN_QUEUED, UH_RUN_ERROR, "secret_unavailable",
			                 "the run's secrets could not be fetched: no worker");
			finish_active(a);
		}
		return;
	}
	start_run(s, a, ops);
}

/* Worker thread: only the store (thread-safe), Vault and the key. */
static void resolve_work(uv_work_t *w)
{
	struct active *a = w->data;
	const struct uh_run *run = a->run;
	struct uh_error err = {0};
	a->resolve_rc =
	    uh_run_secrets_resolve(a->sup->store, a->sup->vault, run->project_id, json_object_get(run->spec, "secrets"),
	                           run->effective_config, &a->secrets, &err);
	if (!a->resolve_rc) {
		struct uh_error e = {0};
		if (uh_masker_new(a->secrets->mask, a->secrets->n_mask, &a->mask, &e))
			a->resolve_rc = uh_error_set(&err, UH_E_UNAVAILABLE, NULL,
			                             "a secret value given to the run cannot be masked in its log "
			                             "(values need at least %d bytes)",
			                             UH_MASK_MIN_LEN);
	}
	if (a->resolve_rc)
		a->resolve_msg = strdup(err.message);
}

static void resolve_done(uv_work_t *w, int status)
{
	struct active *a = w->data;
	struct uh_supervisor *s = a->sup;
	a->resolving = false;
	if (a->stop == STOP_CANCEL || a->run->cancel_requested) {
		end_before_start(s, a->run, UH_RUN_QUEUED, UH_RUN_CANCELED, "canceled", "canceled before it started");
		finish_active(a);
		return;
	}
	if (a->stop == STOP_SHUTDOWN || s->draining) {
		finish_active(a); /* stays queued for the next start */
		return;
	}
	if (status != 0 || a->resolve_rc) {
		const char *msg =
		    status != 0 || !a->resolve_msg ? "the run's secrets could not be fetched" : a->resolve_msg;
		uh_warn("run=%s job=%s backend=%s: %s", a->run->id, a->run->job_id, a->run->backend, msg);
		end_before_start(s, a->run, UH_RUN_QUEUED, UH_RUN_ERROR, "secret_unavailable", msg);
		finish_active(a);
		return;
	}
	start_run(s, a, uh_backend_find(a->run->backend));
}

/* What a backend is given of a run (start and re-attach): the stored
 * snapshot and, for the length of the call, the resolved secrets. */
static struct uh_run_spec spec_of(const struct active *a)
{
	const struct uh_run *run = a->run;
	json_t *cmd = json_object_get(run->spec, "command");
	json_t *env = json_object_get(run->spec, "env");
	struct uh_run_spec spec = {
	    .run_id = run->id,
	    .job_id = run->job_id,
	    .job_name = json_string_value(json_object_get(run->spec, "job_name")),
	    .project_id = run->project_id,
	    .project_name = json_string_value(json_object_get(run->spec, "project_name")),
	    .backend = run->backend,
	    .config = run->effective_config,
	    .command = json_is_array(cmd) ? cmd : NULL,
	    .env = json_is_object(env) ? env : NULL,
	    .secrets = a->secrets ? a->secrets->env : NULL,
	    .n_secrets = a->secrets ? a->secrets->n_env : 0,
	    .config_secrets = a->secrets ? a->secrets->cfg : NULL,
	    .n_config_secrets = a->secrets ? a->secrets->n_cfg : 0,
	    .timeout_s = json_integer_value(json_object_get(run->effective_config, "timeout_seconds")),
	};
	if (spec.timeout_s <= 0)
		spec.timeout_s = a->sup->cfg->guardrails.default_timeout_s;
	return spec;
}

/* queued -> running, then the backend's start. `a` may already be active
 * (its secrets were resolved first). */
static void start_run(struct uh_supervisor *s, struct active *a, const struct uh_backend_ops *ops)
{
	struct uh_run *run = a->run;
	struct uh_error err = {0};
	bool added = find_active(s, run->id) == a;
	int64_t now = uh_now_us();
	struct uh_run_update u = {.from = UH_RUN_QUEUED, .to = UH_RUN_RUNNING, .started_at = now};
	json_t *details = json_pack("{s:s,s:s,s:s}", "from", "queued", "to", "running", "backend", run->backend);
	struct uh_audit_in au = {"system", "run.start", run->id, details};
	int r = uh_store_run_transition(s->store, run->id, &u, &au, &err);
	json_decref(details);
	if (r) {
		/* Canceled or changed meanwhile: leave it to whoever changed it. */
		uh_debug("run=%s not started: %s", run->id, err.message);
		if (added)
			finish_active(a);
		else
			active_free(a);
		return;
	}
	run->status = UH_RUN_RUNNING;
	run->started_at = now;
	uh_metrics_dispatch((double)(now - run->created_at) / 1e6);
	if (!added)
		add_active(s, a);
	uh_notify_run(run->id);
	uh_notify_flush();

	struct uh_run_spec spec = spec_of(a);
	r = uh_backend_start(ops, &s->host, a, s->loop, s->cfg, &spec, &a->h, &err);
	/* The backend copied what it keeps: wipe the values now. The masker
	 * keeps what it derived from them, in locked memory, until the end. */
	uh_run_secrets_free(a->secrets);
	a->secrets = NULL;
	if (r) {
		const char *reason = err.field[0] && uh_run_reason_known(err.field) ? err.field : "backend_error";
		if (r == UH_E_UNAVAILABLE)
			reason = "backend_unavailable";
		uh_warn("run=%s job=%s backend=%s did not start: %s", run->id, run->job_id, run->backend, err.message);
		a->h = NULL;
		struct uh_run_update e = {.from = UH_RUN_RUNNING,
		                          .to = UH_RUN_ERROR,
		                          .reason = reason,
		                          .message = err.message,
		                          .finished_at = uh_now_us()};
		run_transition(s, run, &e, "run.finish");
		finish_active(a);
		return;
	}
	uv_timer_init(s->loop, &a->timeout);
	a->timeout.data = a;
	a->timer_live = true;
	uv_timer_start(&a->timeout, timeout_cb, (uint64_t)spec.timeout_s * 1000, 0);
	a->timeout_s = spec.timeout_s;
	uh_debug("run=%s job=%s backend=%s started", run->id, run->job_id, run->backend);
	run_slim(run);
}

static void dispatch(struct uh_supervisor *s);

static void retry_cb(uv_timer_t *t)
{
	dispatch(t->data);
}

static void dispatch(struct uh_supervisor *s)
{
	if (s->draining)
		return;
	s->waiting_for_slot = false;
	int limit = DISPATCH_BATCH;
	int64_t now = uh_now_us(), next_due = 0;
	for (;;) {
		struct uh_run **runs = NULL;
		size_t n = 0;
		struct uh_error err = {0};
		if (uh_store_runs_in_status(s->store, UH_RUN_QUEUED, limit, &runs, &n, &err)) {
			uh_errorf("cannot list queued runs: %s", err.message);
			return;
		}
		size_t started = 0, held = 0;
		for (size_t i = 0; i < n; i++) {
			if (find_active(s, runs[i]->id)) {
				uh_run_free(runs[i]);
				continue;
			}
			int64_t due = uh_retry_not_before(runs[i]);
			if (!runs[i]->cancel_requested && due > now) {
				/* A delayed retry: stays queued, the timer below wakes it. */
				if (!next_due || due < next_due)
					next_due = due;
				uh_run_free(runs[i]);
				held++;
				continue;
			}
			if (!runs[i]->cancel_requested && s->fds_active + run_fds(runs[i]) > s->fds_max) {
				/* Out of descriptors the next run would need: it waits
				 * queued rather than fail (or take the daemon down). */
				if (!s->fd_cap_said)
					uh_warn("%zu runs in flight: the descriptor limit (RLIMIT_NOFILE) allows no "
					        "more; further runs wait queued",
					        s->n_active);
				s->fd_cap_said = true;
				s->waiting_for_slot = true;
				uh_run_free(runs[i]);
				held++;
				continue;
			}
			if (!runs[i]->cancel_requested && at_limit(s, runs[i])) {
				s->waiting_for_slot = true; /* stays queued, in trigger order */
				uh_run_free(runs[i]);
				held++;
				continue;
			}
			dispatch_one(s, runs[i]);
			started++;
		}
		free(runs);
		if (limit <= 0 || n < (size_t)limit)
			break;
		if (started == 0) {
			if (held == 0)
				break;
			/* A full batch held back by max_concurrent: look past it once. */
			limit = 0;
		}
	}
	if (next_due)
		uv_timer_start(&s->retry_timer, retry_cb, (uint64_t)((next_due - now) / 1000) + 1, 0);
}

static void handle_cancel(struct uh_supervisor *s, const char *run_id)
{
	struct active *a = find_active(s, run_id);
	if (a) {
		uh_info("run=%s job=%s backend=%s cancel requested", a->run->id, a->run->job_id, a->run->backend);
		stop_active(a, STOP_CANCEL, grace_ms(s));
		return;
	}
	/* Not running here: a queued or pending run ends now. */
	struct uh_run *run = NULL;
	if (uh_store_run_get(s->store, run_id, &run, NULL))
		return;
	if (run->status == UH_RUN_QUEUED || run->status == UH_RUN_PENDING_APPROVAL)
		end_before_start(s, run, run->status, UH_RUN_CANCELED, "canceled", "canceled before it started");
	uh_run_free(run);
}

/* ---- callbacks (webhook `callback` mode) ----
 * The API thread waits for the loop's answer, so a second callback of the
 * same run is refused once the first was taken. Kept apart from the
 * supervisor's struct: a process-wide queue under its own lock, each entry
 * naming its supervisor, freed by whichever side lets go last. */
struct cb_request {
	struct cb_request *next;
	struct uh_supervisor *s;
	char run_id[UH_ID_MAX];
	json_t *body; /* a copy owned by the request */
	int result;
	bool done;
	int refs;
};

static pthread_mutex_t cb_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cb_cv = PTHREAD_COND_INITIALIZER;
static struct cb_request *cb_queue;

static void cb_unref_locked(struct cb_request *c)
{
	if (--c->refs == 0) {
		json_decref(c->body);
		free(c);
	}
}

static void handle_callbacks(struct uh_supervisor *s)
{
	pthread_mutex_lock(&cb_mu);
	struct cb_request *mine = NULL, **pp = &cb_queue;
	while (*pp) {
		struct cb_request *c = *pp;
		if (c->s == s) {
			*pp = c->next;
			c->next = mine;
			mine = c;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&cb_mu);
	while (mine) {
		struct cb_request *c = mine;
		mine = c->next;
		struct active *a = find_active(s, c->run_id);
		int rc = UH_E_NOT_FOUND;
		if (a && a->h && a->stop == STOP_NONE) {
			uh_info("run=%s job=%s backend=%s callback received", a->run->id, a->run->job_id,
			        a->run->backend);
			rc = uh_backend_callback(a->h, c->body); /* may finish and free a */
		}
		pthread_mutex_lock(&cb_mu);
		c->result = rc;
		c->done = true;
		pthread_cond_broadcast(&cb_cv);
		cb_unref_locked(c);
		pthread_mutex_unlock(&cb_mu);
	}
}

int uh_supervisor_callback(void *arg, const char *run_id, json_t *body)
{
	struct uh_supervisor *s = arg;
	struct cb_request *c = calloc(1, sizeof(*c));
	if (!c || !run_id || strlen(run_id) >= UH_ID_MAX || !(c->body = json_deep_copy(body))) {
		free(c);
		return UH_E_INTERNAL;
	}
	c->s = s;
	snprintf(c->run_id, sizeof(c->run_id), "%s", run_id);
	c->refs = 2;
	pthread_mutex_lock(&cb_mu);
	c->next = cb_queue;
	cb_queue = c;
	pthread_mutex_unlock(&cb_mu);
	uv_async_send(&s->wake);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&cb_mu);
	while (!c->done)
		if (pthread_cond_timedwait(&cb_cv, &cb_mu, &until) != 0)
			break;
	int rc = c->done ? c->result : UH_E_UNAVAILABLE;
	if (!c->done) {
		/* Not taken yet: take it back so it never runs late. */
		for (struct cb_request **pp = &cb_queue; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				c->refs--;
				break;
			}
	}
	cb_unref_locked(c);
	pthread_mutex_unlock(&cb_mu);
	return rc;
}

static void wake_cb(uv_async_t *w)
{
	struct uh_supervisor *s = w->data;
	pthread_mutex_lock(&s->lock);
	bool kicked = s->kicked;
	s->kicked = false;
	struct request *cancels = s->cancels;
	s->cancels = NULL;
	pthread_mutex_unlock(&s->lock);
	while (cancels) {
		struct request *next = cancels->next;
		handle_cancel(s, cancels->run_id);
		free(cancels);
		cancels = next;
	}
	handle_callbacks(s);
	if (kicked)
		dispatch(s);
}

/* A slow safety net: picks up runs queued by a path that did not kick. */
static void poll_cb(uv_timer_t *t)
{
	struct uh_supervisor *s = t->data;
	uh_guard_sweep_expired(s->store, s->cfg); /* approval_ttl_seconds */
	retry_unfinished(s);
	dispatch(s);
}

void uh_supervisor_kick(void *arg)
{
	struct uh_supervisor *s = arg;
	pthread_mutex_lock(&s->lock);
	s->kicked = true;
	pthread_mutex_unlock(&s->lock);
	uv_async_send(&s->wake);
}

void uh_supervisor_cancel(void *arg, const char *run_id)
{
	struct uh_supervisor *s = arg;
	struct request *r = calloc(1, sizeof(*r));
	if (!r)
		return;
	snprintf(r->run_id, sizeof(r->run_id), "%s", run_id);
	pthread_mutex_lock(&s->lock);
	r->next = s->cancels;
	s->cancels = r;
	pthread_mutex_unlock(&s->lock);
	uv_async_send(&s->wake);
}

/* Descriptors runs in flight may hold together: the limit less a reserve
 * for the API, the store, the loop and what a run opens for a moment while
 * it starts or ends. Each run counts its backend's fds_per_run (one for
 * Local, sockets for Docker and webhooks). */
static size_t fd_budget(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return SIZE_MAX;
	size_t n = rl.rlim_cur > 512 ? (size_t)(rl.rlim_cur - 512) : 0;
	return n < 32 ? 32 : n; /* a tiny limit still runs a few */
}

int uh_supervisor_new(uv_loop_t *loop, struct uh_store *store, const struct uh_config *cfg, struct uh_supervisor **out,
                      struct uh_error *err)
{
	struct uh_supervisor *s = calloc(1, sizeof(*s));
	if (!s)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory");
	s->loop = loop;
	s->fds_max = fd_budget();
	s->store = store;
	s->cfg = cfg;
	pthread_mutex_init(&s->lock, NULL);
	s->host.output = on_output;
	s->host.persist = on_persist;
	s->host.finished = on_finished;
	uv_async_init(loop, &s->wake, wake_cb);
	s->wake.data = s;
	uv_timer_init(loop, &s->flush_timer);
	s->flush_timer.data = s;
	uv_timer_init(loop, &s->drain_timer);
	s->drain_timer.data = s;
	uv_timer_init(loop, &s->poll_timer);
	s->poll_timer.data = s;
	uv_timer_start(&s->poll_timer, poll_cb, 1000, 1000);
	uv_timer_init(loop, &s->retry_timer);
	s->retry_timer.data = s;
	if (!(s->retention = uh_retention_start(loop, store, &s->cfg)))
		uh_errorf("retention: out of memory; finished runs will not be pruned");
	*out = s;
	return 0;
}

/* A run a previous daemon left running on a backend whose work outlives
 * the daemon (a container, a remote job): take it over again — its secrets re-read for
 * the masker, the rest of its timeout re-armed, output appended after what
 * is stored. False when it cannot be (the caller settles it as lost). */
static bool reattach(struct uh_supervisor *s, struct uh_run *run)
{
	const struct uh_backend_ops *ops = uh_backend_find(run->backend);
	if (!ops || !ops->reattach || !run->external_id[0] || !(ops->caps & UH_CAP_REATTACH))
		return false;
	struct uh_error err = {0};
	struct active *a = active_new(s, run);
	if (!a)
		return false;
	int64_t end = 0;
	if (uh_store_log_end(s->store, run->id, &end, &err))
		goto fail;
	a->offset = end;
	if (uh_run_needs_secrets(json_object_get(run->spec, "secrets"), run->effective_config)) {
		if (uh_run_secrets_resolve(s->store, s->vault, run->project_id, json_object_get(run->spec, "secrets"),
		                           run->effective_config, &a->secrets, &err) ||
		    uh_masker_new(a->secrets->mask, a->secrets->n_mask, &a->mask, &err))
			goto fail; /* cannot mask its output: do not take it over */
	}
	struct uh_run_spec spec = spec_of(a);
	add_active(s, a);
	if (uh_backend_reattach(ops, &s->host, a, s->loop, s->cfg, &spec, run->external_id, &a->h, &err)) {
		remove_active(s, a);
		goto fail;
	}
	uh_run_secrets_free(a->secrets);
	a->secrets = NULL;
	static const char note[] = "[uhub: re-attached after a daemon restart; output written while uhub was down "
	                           "is not in this log]\n";
	store_output(a, UH_STREAM_SYSTEM, note, sizeof(note) - 1);
	int64_t left_ms = spec.timeout_s * 1000 - (uh_now_us() - run->started_at) / 1000;
	uv_timer_init(s->loop, &a->timeout);
	a->timeout.data = a;
	a->timer_live = true;
	uv_timer_start(&a->timeout, timeout_cb, left_ms > 0 ? (uint64_t)left_ms : 1, 0);
	a->timeout_s = spec.timeout_s;
	uh_info("run=%s job=%s backend=%s re-attached after a restart", run->id, run->job_id, run->backend);
	run_slim(run);
	return true;
fail:
	uh_warn("run=%s job=%s backend=%s cannot be re-attached: %s", run->id, run->job_id, run->backend, err.message);
	a->run = NULL; /* still the caller's */
	active_free(a);
	return false;
}

int uh_supervisor_recover(struct uh_supervisor *s, struct uh_error *err)
{
	struct uh_run **runs = NULL;
	size_t n = 0;
	int r = uh_store_runs_in_status(s->store, UH_RUN_RUNNING, 1000000, &runs, &n, err);
	if (r)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct uh_run *run = runs[i];
		struct uh_error e = {0};
		if (reattach(s, run)) {
			runs[i] = NULL; /* the active record owns it now */
			continue;
		}
		if (uh_backend_settle(s->cfg, run->backend, run->id, run->external_id, &e))
			uh_errorf("run=%s job=%s backend=%s could not be settled: %s", run->id, run->job_id,
			          run->backend, e.message);
		char msg[256];
		snprintf(msg, sizeof(msg), "uhub restarted while the run was running; its processes were ended");
		struct uh_run_update u = {.from = UH_RUN_RUNNING,
		                          .to = UH_RUN_LOST,
		                          .reason = "daemon_restart",
		                          .message = msg,
		                          .finished_at = uh_now_us()};
		run_transition(s, run, &u, "run.finish");
		uh_warn("run=%s job=%s backend=%s lost: daemon_restart", run->id, run->job_id, run->backend);
	}
	uh_store_runs_free(runs, n);
	uh_guard_sweep_expired(s->store, s->cfg);
	uh_supervisor_kick(s);
	return 0;
}

static void drain_timeout_cb(uv_timer_t *t)
{
	struct uh_supervisor *s = t->data;
	for (unsigned b = 0; b < NBUCKETS; b++)
		for (struct active *a = s->buckets[b]; a; a = a->next_in_bucket)
			stop_active(a, STOP_SHUTDOWN, grace_ms(s));
}

void uh_supervisor_drain(struct uh_supervisor *s, int64_t grace_s, void (*done)(void *arg), void *arg)
{
	bool again = s->draining;
	s->draining = true;
	s->drain_done = done;
	s->drain_arg = arg;
	uv_timer_stop(&s->poll_timer);
	uv_timer_stop(&s->retry_timer);
	uh_retention_stop(s->retention);
	if (again) {
		for (unsigned b = 0; b < NBUCKETS; b++)
			for (struct active *a = s->buckets[b]; a; a = a->next_in_bucket)
				stop_active(a, STOP_SHUTDOWN, 0);
	} else {
		uv_timer_start(&s->drain_timer, drain_timeout_cb, (uint64_t)grace_s * 1000, 0);
	}
	maybe_drain_done(s);
}

void uh_supervisor_set_vault(struct uh_supervisor *s, struct uh_vault *vault)
{
	s->vault = vault;
}

void uh_supervisor_set_config(struct uh_supervisor *s, const struct uh_config *cfg)
{
	s->cfg = cfg;
}

size_t uh_supervisor_active(const struct uh_supervisor *s)
{
	return s->n_active;
}

void uh_supervisor_free(struct uh_supervisor *s)
{
	if (!s)
		return;
	flush(s);
	free(s->chunks);
	free(s->drops);
	while (s->unfinished) {
		struct unfinished *n = s->unfinished->next;
		free(s->unfinished);
		s->unfinished = n;
	}
	for (unsigned b = 0; b < NBUCKETS; b++)
		while (s->slots[b]) {
			struct slot_count *n = s->slots[b]->next;
			free(s->slots[b]);
			s->slots[b] = n;
		}
	uh_retention_free(s->retention);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
