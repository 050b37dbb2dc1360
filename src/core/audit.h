/* The audit chain: each event's hash is an HMAC-SHA256, keyed with a key kept
 * outside the store, over the previous hash and the event's fields. Editing,
 * deleting, reordering or rewriting events breaks the chain; cutting the tail
 * off is caught by the head recorded outside the store. */
#ifndef UH_CORE_AUDIT_H
#define UH_CORE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define UH_AUDIT_KEY_LEN 32
#define UH_AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

struct uh_audit_event {
	int64_t seq;         /* 1, 2, 3, ... */
	int64_t at;          /* microseconds */
	const char *actor;   /* user id, or "system" */
	const char *action;  /* "run.create", "project.update", ... */
	const char *target;  /* object id, or "" */
	const char *details; /* compact JSON text, "{}" when none */
	char prev[65];       /* hash of seq-1, UH_AUDIT_GENESIS for seq 1 */
};

/* hash = hex(HMAC(key, canonical(ev))), canonical = length-prefixed fields. */
void uh_audit_hash(const unsigned char *key, size_t keylen, const struct uh_audit_event *ev, char out[65]);

/* Load the key file, or create it (32 random bytes, 0600) when missing.
 * A key file that is not 0600 or not 32 bytes is refused. */
int uh_audit_key_load(const char *path, unsigned char key[UH_AUDIT_KEY_LEN], struct uh_error *err);

/* The head record kept outside the store: the last seq and hash. */
struct uh_audit_head {
	int fd; /* the open head file (0600), -1 when none */
};
int uh_audit_head_open(struct uh_audit_head *h, const char *path, struct uh_error *err);
/* Overwrite the head with (seq, hash). Cheap: one pwrite of a fixed record. */
int uh_audit_head_write(struct uh_audit_head *h, int64_t seq, const char hash[65]);
/* Read it; seq 0 when the file is empty. */
int uh_audit_head_read(const char *path, int64_t *seq, char hash[65], struct uh_error *err);
void uh_audit_head_close(struct uh_audit_head *h);

#endif
