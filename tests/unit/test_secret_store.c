/* The secret rows of the SQLite store (store/store.h, "Secrets"): put,
 * replace, delete, lists and their pages, shared grants (replaced, kept,
 * unknown or archived projects), granted(), the all-or-nothing re-seal,
 * and the audit events (never a blob in them). The blobs here are opaque
 * bytes: the store never opens them. */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "tap.h"

static struct uh_error E;
static const unsigned char KEY[UH_AUDIT_KEY_LEN] = "0123456789abcdef0123456789abcdef";

#define OK(call)                                                                                                 \
	do {                                                                                                     \
		memset(&E, 0, sizeof(E));                                                                        \
		int _rc = (call);                                                                                \
		if (_rc)                                                                                         \
			fprintf(stderr, "%s:%d: %s failed: %d %s\n", __FILE__, __LINE__, #call, _rc, E.message); \
		CHECK(_rc == 0);                                                                                 \
	} while (0)

#define FAILS(call, code)                                                                                    \
	do {                                                                                                 \
		memset(&E, 0, sizeof(E));                                                                    \
		int _rc = (call);                                                                            \
		if (_rc != (code))                                                                           \
			fprintf(stderr, "%s:%d: %s: %d (%s), expected %d\n", __FILE__, __LINE__, #call, _rc, \
			        E.message, (code));                                                          \
		CHECK(_rc == (code));                                                                        \
	} while (0)

#define AUD(act) (&(struct uh_audit_in){.actor = "u_admin", .action = (act)})
#define BLOB(s)  ((const unsigned char *)(s)), strlen(s)

static char dir[64];

static const char *sget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static char *new_project(struct uh_store *s, const char *name)
{
	json_t *f = json_pack("{s:s, s:s, s:s, s:{}}", "name", name, "environment", "dev", "execution_backend", "local",
	                      "execution_backend_config");
	json_t *p = NULL;
	OK(uh_store_project_create(s, f, AUD("project.create"), &p, &E));
	char *id = p ? strdup(sget(p, "id")) : strdup("none");
	json_decref(f);
	json_decref(p);
	return id;
}

static int64_t count_items(struct uh_store *s, const char *scope)
{
	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_secret_list(s, scope, 100, NULL, &items, next, &E));
	int64_t n = (int64_t)json_array_size(items);
	json_decref(items);
	return n;
}

static bool blob_is(struct uh_store *s, const char *scope, const char *name, const char *want)
{
	unsigned char *b = NULL;
	size_t n = 0;
	memset(&E, 0, sizeof(E));
	if (uh_store_secret_get(s, scope, name, &b, &n, &E))
		return false;
	bool ok = n == strlen(want) && memcmp(b, want, n) == 0;
	free(b);
	return ok;
}

/* The newest audit event. New reference. */
static json_t *last_event(struct uh_store *s)
{
	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_audit_list(s, NULL, NULL, NULL, 1, NULL, &items, next, &E));
	json_t *e = json_incref(json_array_get(items, 0));
	json_decref(items);
	return e;
}

static bool grants_are(const json_t *o, const char *a, const char *b)
{
	json_t *p = json_object_get(o, "projects");
	size_t want = (a != NULL) + (b != NULL);
	if (!json_is_array(p) || json_array_size(p) != want)
		return false;
	for (size_t i = 0; i < want; i++) {
		const char *x = json_string_value(json_array_get(p, i));
		if (!x || (strcmp(x, a) && (!b || strcmp(x, b))))
			return false;
	}
	return true;
}

static void test_project_secrets(struct uh_store *s, const char *pa, const char *pb)
{
	bool created = false;
	OK(uh_store_secret_put(s, pa, "DB_PASSWORD", BLOB("blob-one"), NULL, "u_admin", AUD("secret.put"), &created,
	                       &E));
	CHECK(created);
	json_t *e = last_event(s);
	CHECK_STR(sget(e, "action"), "secret.put");
	CHECK_STR(sget(e, "actor"), "u_admin");
	CHECK_STR(sget(e, "target"), pa);
	json_t *d = json_object_get(e, "details");
	CHECK_STR(sget(d, "scope"), pa);
	CHECK_STR(sget(d, "name"), "DB_PASSWORD");
	CHECK(json_object_size(d) == 2);
	json_decref(e);

	json_t *m = NULL;
	OK(uh_store_secret_meta(s, pa, "DB_PASSWORD", &m, &E));
	CHECK_STR(sget(m, "name"), "DB_PASSWORD");
	CHECK_STR(sget(m, "scope"), pa);
	CHECK_STR(sget(m, "updated_by"), "u_admin");
	CHECK(sget(m, "created_at") && sget(m, "updated_at"));
	CHECK(!json_object_get(m, "projects") && !json_object_get(m, "blob") && !json_object_get(m, "value"));
	char created_at[64];
	snprintf(created_at, sizeof(created_at), "%s", sget(m, "created_at"));
	json_decref(m);
	CHECK(blob_is(s, pa, "DB_PASSWORD", "blob-one"));

	/* replace: same row, new blob, created_at kept */
	usleep(2000);
	OK(uh_store_secret_put(s, pa, "DB_PASSWORD", BLOB("blob-two"), NULL, "u_other", AUD("secret.put"), &created,
	                       &E));
	CHECK(!created);
	CHECK(blob_is(s, pa, "DB_PASSWORD", "blob-two"));
	OK(uh_store_secret_meta(s, pa, "DB_PASSWORD", &m, &E));
	CHECK_STR(sget(m, "created_at"), created_at);
	CHECK_STR(sget(m, "updated_by"), "u_other");
	json_decref(m);
	CHECK(count_items(s, pa) == 1);

	/* the same name in another project is another secret */
	OK(uh_store_secret_put(s, pb, "DB_PASSWORD", BLOB("blob-b"), NULL, "u_admin", AUD("secret.put"), &created, &E));
	CHECK(created);
	CHECK(blob_is(s, pa, "DB_PASSWORD", "blob-two") && blob_is(s, pb, "DB_PASSWORD", "blob-b"));
	FAILS(uh_store_secret_get(s, "shared", "DB_PASSWORD", &(unsigned char *){NULL}, &(size_t){0}, &E),
	      UH_E_NOT_FOUND);

	/* grants are for shared secrets only; unknown project scope refused */
	json_t *pr = json_pack("[s]", pb);
	FAILS(uh_store_secret_put(s, pa, "X_TOKEN", BLOB("b"), pr, "u_admin", AUD("secret.put"), &created, &E),
	      UH_E_INVALID_REQUEST);
	CHECK_STR(E.field, "projects");
	json_decref(pr);
	FAILS(
	    uh_store_secret_put(s, "p_nothing", "X_TOKEN", BLOB("b"), NULL, "u_admin", AUD("secret.put"), &created, &E),
	    UH_E_NOT_FOUND);
	FAILS(uh_store_secret_put(s, pa, "X_TOKEN", BLOB("b"), NULL, "u_admin", NULL, &created, &E), UH_E_INTERNAL);
	CHECK(count_items(s, pa) == 1);

	/* pages: newest first, `next` walks them all once */
	char name[32];
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "K%d", i);
		OK(uh_store_secret_put(s, pa, name, BLOB("bk"), NULL, "u_admin", AUD("secret.put"), &created, &E));
	}
	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_secret_list(s, pa, 2, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 2 && next[0]);
	CHECK_STR(sget(json_array_get(items, 0), "name"), "K4");
	CHECK_STR(sget(json_array_get(items, 1), "name"), "K3");
	json_decref(items);
	int seen = 2, pages = 1;
	char cur[UH_CURSOR_MAX];
	while (next[0] && pages < 10) {
		snprintf(cur, sizeof(cur), "%s", next);
		OK(uh_store_secret_list(s, pa, 2, cur, &items, next, &E));
		seen += (int)json_array_size(items);
		pages++;
		json_decref(items);
	}
	CHECK(seen == 6 && pages == 3);
	FAILS(uh_store_secret_list(s, pa, 2, "x", &items, next, &E), UH_E_INVALID_REQUEST);
	CHECK_STR(E.field, "before");

	/* delete */
	OK(uh_store_secret_delete(s, pa, "K0", AUD("secret.delete"), &E));
	e = last_event(s);
	CHECK_STR(sget(e, "action"), "secret.delete");
	CHECK_STR(sget(json_object_get(e, "details"), "name"), "K0");
	json_decref(e);
	FAILS(uh_store_secret_delete(s, pa, "K0", AUD("secret.delete"), &E), UH_E_NOT_FOUND);
	FAILS(uh_store_secret_meta(s, pa, "K0", &m, &E), UH_E_NOT_FOUND);
	CHECK(count_items(s, pa) == 5);
	CHECK(blob_is(s, pb, "DB_PASSWORD", "blob-b"));
}

static void test_shared_secrets(struct uh_store *s, const char *pa, const char *pb, const char *pc)
{
	bool created = false, g = false;
	json_t *ab = json_pack("[s,s,s]", pa, pb, pa); /* a repeat is one grant */
	OK(uh_store_secret_put(s, "shared", "GITLAB", BLOB("sealed-g"), ab, "u_admin", AUD("secret.put"), &created,
	                       &E));
	CHECK(created);
	json_decref(ab);
	json_t *e = last_event(s);
	CHECK_STR(sget(e, "target"), "shared");
	json_t *d = json_object_get(e, "details");
	CHECK_STR(sget(d, "scope"), "shared");
	CHECK_STR(sget(d, "name"), "GITLAB");
	CHECK(grants_are(d, pa, pb));
	json_decref(e);
	OK(uh_store_secret_granted(s, "GITLAB", pa, &g, &E));
	CHECK(g);
	OK(uh_store_secret_granted(s, "GITLAB", pb, &g, &E));
	CHECK(g);
	OK(uh_store_secret_granted(s, "GITLAB", pc, &g, &E));
	CHECK(!g);
	OK(uh_store_secret_granted(s, "NOPE", pa, &g, &E));
	CHECK(!g);
	/* a project's own secret of that name is no shared grant */
	OK(uh_store_secret_put(s, pc, "GITLAB", BLOB("own"), NULL, "u_admin", AUD("secret.put"), &created, &E));
	OK(uh_store_secret_granted(s, "GITLAB", pc, &g, &E));
	CHECK(!g);

	/* replace without projects keeps the grants */
	OK(uh_store_secret_put(s, "shared", "GITLAB", BLOB("sealed-g2"), NULL, "u_admin", AUD("secret.put"), &created,
	                       &E));
	CHECK(!created);
	json_t *m = NULL;
	OK(uh_store_secret_meta(s, "shared", "GITLAB", &m, &E));
	CHECK(grants_are(m, pa, pb));
	json_decref(m);
	/* with projects replaces them */
	json_t *conly = json_pack("[s]", pc);
	OK(uh_store_secret_put(s, "shared", "GITLAB", BLOB("sealed-g3"), conly, "u_admin", AUD("secret.put"), &created,
	                       &E));
	json_decref(conly);
	OK(uh_store_secret_granted(s, "GITLAB", pa, &g, &E));
	CHECK(!g);
	OK(uh_store_secret_granted(s, "GITLAB", pc, &g, &E));
	CHECK(g);
	/* an empty list grants nothing */
	json_t *none = json_array();
	OK(uh_store_secret_put(s, "shared", "EMPTY", BLOB("sealed-e"), none, "u_admin", AUD("secret.put"), &created,
	                       &E));
	OK(uh_store_secret_meta(s, "shared", "EMPTY", &m, &E));
	CHECK(json_is_array(json_object_get(m, "projects")) && json_array_size(json_object_get(m, "projects")) == 0);
	json_decref(m);
	json_decref(none);

	/* unknown project in the grants: refused, nothing changed */
	json_t *bad = json_pack("[s,s]", pa, "p_unknown");
	FAILS(uh_store_secret_put(s, "shared", "GITLAB", BLOB("sealed-bad"), bad, "u_admin", AUD("secret.put"),
	                          &created, &E),
	      UH_E_INVALID_REQUEST);
	CHECK_STR(E.field, "projects");
	CHECK(strstr(E.message, "p_unknown") != NULL);
	FAILS(uh_store_secret_put(s, "shared", "NEWONE", BLOB("sealed-bad"), bad, "u_admin", AUD("secret.put"),
	                          &created, &E),
	      UH_E_INVALID_REQUEST);
	json_decref(bad);
	CHECK(blob_is(s, "shared", "GITLAB", "sealed-g3"));
	FAILS(uh_store_secret_meta(s, "shared", "NEWONE", &m, &E), UH_E_NOT_FOUND);
	json_t *notstr = json_pack("[i]", 3);
	FAILS(uh_store_secret_put(s, "shared", "GITLAB", BLOB("x"), notstr, "u_admin", AUD("secret.put"), &created, &E),
	      UH_E_INVALID_REQUEST);
	json_decref(notstr);

	/* archived project: its grant no longer counts, nor can it be granted */
	json_t *bc = json_pack("[s,s]", pb, pc);
	OK(uh_store_secret_put(s, "shared", "GITLAB", BLOB("sealed-g4"), bc, "u_admin", AUD("secret.put"), &created,
	                       &E));
	json_decref(bc);
	OK(uh_store_project_archive(s, pb, AUD("project.archive"), &E));
	OK(uh_store_secret_granted(s, "GITLAB", pb, &g, &E));
	CHECK(!g);
	OK(uh_store_secret_meta(s, "shared", "GITLAB", &m, &E));
	CHECK(grants_are(m, pc, NULL));
	json_decref(m);
	json_t *bonly = json_pack("[s]", pb);
	FAILS(uh_store_secret_put(s, "shared", "GITLAB", BLOB("x"), bonly, "u_admin", AUD("secret.put"), &created, &E),
	      UH_E_INVALID_REQUEST);
	json_decref(bonly);
	FAILS(uh_store_secret_put(s, pb, "LATE", BLOB("x"), NULL, "u_admin", AUD("secret.put"), &created, &E),
	      UH_E_NOT_FOUND);

	/* the shared list holds only shared secrets */
	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_secret_list(s, "shared", 100, NULL, &items, next, &E));
	CHECK(json_array_size(items) == 2 && !next[0]);
	size_t i;
	json_t *v;
	json_array_foreach(items, i, v)
	{
		CHECK_STR(sget(v, "scope"), "shared");
		CHECK(json_is_array(json_object_get(v, "projects")));
	}
	json_decref(items);

	/* deleting forgets the grants: a new secret of that name starts bare */
	OK(uh_store_secret_delete(s, "shared", "GITLAB", AUD("secret.delete"), &E));
	OK(uh_store_secret_granted(s, "GITLAB", pc, &g, &E));
	CHECK(!g);
	OK(uh_store_secret_put(s, "shared", "GITLAB", BLOB("again"), NULL, "u_admin", AUD("secret.put"), &created, &E));
	CHECK(created);
	OK(uh_store_secret_granted(s, "GITLAB", pc, &g, &E));
	CHECK(!g);
	FAILS(uh_store_secret_delete(s, "shared", "NOPE", AUD("secret.delete"), &E), UH_E_NOT_FOUND);
}

/* Re-seal: prefix each blob with "R:"; fail on the row named `fail_on`. */
struct reseal_arg {
	const char *fail_on;
	int calls;
	json_t *details; /* when set: {"seen": calls} */
};

static int reseal_fn(void *arg, const char *scope, const char *name, const unsigned char *blob, size_t blob_len,
                     unsigned char **out, size_t *out_len, struct uh_error *err)
{
	struct reseal_arg *r = arg;
	(void)scope;
	r->calls++;
	if (r->details)
		json_object_set_new(r->details, "seen", json_integer(r->calls));
	if (r->fail_on && strcmp(name, r->fail_on) == 0)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "secret '%s' does not open", name);
	*out = malloc(blob_len + 2);
	memcpy(*out, "R:", 2);
	memcpy(*out + 2, blob, blob_len);
	*out_len = blob_len + 2;
	return 0;
}

static void test_reseal(struct uh_store *s, const char *pa)
{
	json_t *before = last_event(s);
	int64_t seq = json_integer_value(json_object_get(before, "seq"));
	json_decref(before);
	struct reseal_arg fail = {.fail_on = "K3"};
	int64_t count = -1;
	FAILS(uh_store_secret_reseal(s, reseal_fn, &fail, AUD("secret.rotate_key"), &count, &E), UH_E_INTERNAL);
	CHECK(count == 0 && fail.calls >= 1);
	CHECK(strstr(E.message, "K3") != NULL);
	/* nothing changed, no event */
	CHECK(blob_is(s, pa, "DB_PASSWORD", "blob-two") && blob_is(s, pa, "K1", "bk") &&
	      blob_is(s, "shared", "GITLAB", "again"));
	json_t *e = last_event(s);
	CHECK(json_integer_value(json_object_get(e, "seq")) == seq);
	json_decref(e);

	struct reseal_arg ok = {0};
	OK(uh_store_secret_reseal(s, reseal_fn, &ok, AUD("secret.rotate_key"), &count, &E));
	CHECK(count == ok.calls && count >= 8);
	CHECK(blob_is(s, pa, "DB_PASSWORD", "R:blob-two") && blob_is(s, pa, "K1", "R:bk") &&
	      blob_is(s, "shared", "GITLAB", "R:again"));
	e = last_event(s);
	CHECK_STR(sget(e, "action"), "secret.rotate_key");
	CHECK(json_integer_value(json_object_get(json_object_get(e, "details"), "count")) == count);
	json_decref(e);
	/* the caller's details, filled by fn during the transaction */
	struct reseal_arg filled = {0};
	json_t *d = json_object();
	struct uh_audit_in ad = {.actor = "u_admin", .action = "secret.rotate_key", .details = d};
	filled.details = d;
	OK(uh_store_secret_reseal(s, reseal_fn, &filled, &ad, &count, &E));
	json_decref(d);
	e = last_event(s);
	CHECK(json_integer_value(json_object_get(json_object_get(e, "details"), "seen")) == count);
	CHECK(!json_object_get(json_object_get(e, "details"), "count"));
	json_decref(e);
	CHECK(blob_is(s, pa, "K1", "R:R:bk"));
	/* grants and metadata survive */
	json_t *m = NULL;
	OK(uh_store_secret_meta(s, pa, "DB_PASSWORD", &m, &E));
	CHECK_STR(sget(m, "updated_by"), "u_other");
	json_decref(m);
}

/* No blob in any audit event, and the audit chain holds. */
static void test_audit_clean(struct uh_store *s)
{
	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	OK(uh_store_audit_list(s, NULL, NULL, NULL, 100, NULL, &items, next, &E));
	char *text = json_dumps(items, JSON_COMPACT);
	CHECK(text && !strstr(text, "blob-") && !strstr(text, "sealed-") && !strstr(text, "R:"));
	free(text);
	json_decref(items);
	json_t *v = NULL;
	OK(uh_store_audit_verify(s, &v, &E));
	CHECK(json_is_true(json_object_get(v, "ok")));
	json_decref(v);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/uh-test-secret-store-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char url[128], head[128];
	snprintf(url, sizeof(url), "sqlite:%s/uhub.db", dir);
	snprintf(head, sizeof(head), "%s/audit.head", dir);
	struct uh_store_options o = {.audit_key = KEY, .audit_head_path = head};
	struct uh_store *s = NULL;
	OK(uh_store_open(url, &o, &s, &E));
	if (s) {
		char *pa = new_project(s, "alpha"), *pb = new_project(s, "beta"), *pc = new_project(s, "gamma");
		test_project_secrets(s, pa, pb);
		test_shared_secrets(s, pa, pb, pc);
		test_reseal(s, pa);
		test_audit_clean(s);
		uh_store_close(s);
		/* reopening applies nothing new and keeps the rows */
		s = NULL;
		OK(uh_store_open(url, &o, &s, &E));
		if (s)
			CHECK(blob_is(s, pa, "DB_PASSWORD", "R:R:blob-two"));
		uh_store_close(s);
		free(pa);
		free(pb);
		free(pc);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return uh_tap_done();
}
