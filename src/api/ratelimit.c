/* A token bucket per user, in memory (SPEC §5 rate limit). Buckets idle for
 * longer than it takes them to refill are dropped on the way, so the table
 * holds only users seen in the last minute or so. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

#define NSLOTS  256
#define IDLE_US (120 * 1000000LL)

struct bucket {
	char key[UH_ID_MAX];
	double tokens;
	int64_t last_us;
	struct bucket *next;
};

struct uh_ratelimit {
	pthread_mutex_t mu;
	struct bucket *slot[NSLOTS];
};

struct uh_ratelimit *uh_ratelimit_new(void)
{
	struct uh_ratelimit *rl = calloc(1, sizeof(*rl));
	if (rl)
		pthread_mutex_init(&rl->mu, NULL);
	return rl;
}

void uh_ratelimit_free(struct uh_ratelimit *rl)
{
	if (!rl)
		return;
	for (int i = 0; i < NSLOTS; i++)
		for (struct bucket *b = rl->slot[i], *n; b; b = n) {
			n = b->next;
			free(b);
		}
	pthread_mutex_destroy(&rl->mu);
	free(rl);
}

static unsigned hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NSLOTS;
}

bool uh_ratelimit_take(struct uh_ratelimit *rl, const char *key, int64_t per_minute, int64_t now_us,
                       int64_t *retry_after_s)
{
	if (!rl || per_minute <= 0)
		return true;
	double cap = (double)per_minute, rate = (double)per_minute / 60e6; /* tokens per microsecond */
	bool ok = true;
	pthread_mutex_lock(&rl->mu);
	struct bucket **pp = &rl->slot[hash(key)], *b = NULL;
	while (*pp) {
		struct bucket *c = *pp;
		if (strcmp(c->key, key) == 0) {
			b = c;
			pp = &c->next;
			continue;
		}
		if (now_us - c->last_us > IDLE_US) { /* full again: forget it */
			*pp = c->next;
			free(c);
			continue;
		}
		pp = &c->next;
	}
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b) {
			pthread_mutex_unlock(&rl->mu);
			return true; /* fail open: a limiter must not take the API down */
		}
		strncpy(b->key, key, sizeof(b->key) - 1);
		b->tokens = cap;
		b->last_us = now_us;
		unsigned h = hash(key);
		b->next = rl->slot[h];
		rl->slot[h] = b;
	}
	if (now_us > b->last_us) {
		b->tokens += (double)(now_us - b->last_us) * rate;
		if (b->tokens > cap)
			b->tokens = cap;
		b->last_us = now_us;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
	} else {
		ok = false;
		if (retry_after_s) {
			int64_t wait = (int64_t)((1.0 - b->tokens) / rate / 1e6) + 1;
			*retry_after_s = wait < 1 ? 1 : wait;
		}
	}
	pthread_mutex_unlock(&rl->mu);
	return ok;
}
