/* See notify.h. A hash of run id -> watcher list under one mutex; the mutex
 * is held while callbacks run, which is what makes unwatch safe. */
#include "core/notify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/crypto.h"

#define NBUCKETS 1024

struct uh_watch {
	char run_id[UH_ID_MAX];
	uh_notify_fn fn;
	void *arg;
	struct uh_watch *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct uh_watch *buckets[NBUCKETS];
static _Atomic(uh_notify_fn) flush_fn;
static void *_Atomic flush_arg;

static unsigned bucket(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NBUCKETS;
}

struct uh_watch *uh_notify_watch(const char *run_id, uh_notify_fn fn, void *arg)
{
	struct uh_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	snprintf(w->run_id, sizeof(w->run_id), "%s", run_id);
	w->fn = fn;
	w->arg = arg;
	unsigned b = bucket(w->run_id);
	pthread_mutex_lock(&lock);
	w->next = buckets[b];
	buckets[b] = w;
	pthread_mutex_unlock(&lock);
	return w;
}

void uh_notify_unwatch(struct uh_watch *w)
{
	if (!w)
		return;
	unsigned b = bucket(w->run_id);
	pthread_mutex_lock(&lock);
	for (struct uh_watch **p = &buckets[b]; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	pthread_mutex_unlock(&lock);
	free(w);
}

void uh_notify_run(const char *run_id)
{
	unsigned b = bucket(run_id);
	pthread_mutex_lock(&lock);
	for (struct uh_watch *w = buckets[b]; w; w = w->next)
		if (strcmp(w->run_id, run_id) == 0)
			w->fn(w->arg);
	pthread_mutex_unlock(&lock);
}

void uh_notify_all(void)
{
	pthread_mutex_lock(&lock);
	for (unsigned b = 0; b < NBUCKETS; b++)
		for (struct uh_watch *w = buckets[b]; w; w = w->next)
			w->fn(w->arg);
	pthread_mutex_unlock(&lock);
}

void uh_notify_set_flush(uh_notify_fn fn, void *arg)
{
	atomic_store(&flush_fn, NULL);
	atomic_store(&flush_arg, arg);
	atomic_store(&flush_fn, fn);
}

void uh_notify_flush(void)
{
	uh_notify_fn fn = atomic_load(&flush_fn);
	if (fn)
		fn(atomic_load(&flush_arg));
}
