/* Run control (issue 9): the retry chain and its backoff (daemon/retry.c),
 * the queue position and retention pruning of the SQLite store. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/retry.h"
#include "store/store.h"
#include "tap.h"
#include "util/crypto.h"
#include "util/time.h"

static const unsigned char KEY[UH_AUDIT_KEY_LEN] = {9};

static struct uh_run *ended(int status, int64_t retries, int64_t attempt)
{
	struct uh_run *r = uh_run_new();
	snprintf(r->id, sizeof(r->id), "r_a%lld", (long long)attempt);
	snprintf(r->job_id, sizeof(r->job_id), "j_1");
	snprintf(r->project_id, sizeof(r->project_id), "p_1");
	r->status = status;
	r->backend = strdup("local");
	r->parameters = json_pack("{s:s}", "X", "1");
	r->effective_config = json_pack("{s:i}", "timeout_seconds", 5);
	r->comments = json_array();
	r->spec = json_pack("{s:[s],s:{s:s},s:I}", "command", "/bin/true", "env", "UHUB_RUN_ID", r->id, "retries",
	                    (json_int_t)retries);
	if (attempt)
		json_object_set_new(r->spec, "attempt", json_integer(attempt));
	return r;
}

static void test_retry_chain(void)
{
	int64_t now = 1000000000;
	/* never for these */
	int never[] = {UH_RUN_SUCCEEDED, UH_RUN_FAILED, UH_RUN_TIMED_OUT, UH_RUN_CANCELED, UH_RUN_REJECTED};
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
		struct uh_run *r = ended(never[i], 3, 0);
		CHECK(uh_retry_next(r, now) == NULL);
		uh_run_free(r);
	}
	/* retries 0: none */
	struct uh_run *r = ended(UH_RUN_ERROR, 0, 0);
	CHECK(uh_retry_next(r, now) == NULL);
	uh_run_free(r);
	/* error and lost, up to `retries` along the chain, 1 s, 2 s, 4 s ... */
	int64_t want[] = {1, 2, 4};
	for (int64_t a = 0; a < 3; a++) {
		r = ended(a % 2 ? UH_RUN_LOST : UH_RUN_ERROR, 3, a);
		struct uh_run *n = uh_retry_next(r, now);
		CHECK(n != NULL);
		if (n) {
			CHECK(strcmp(n->retry_of, r->id) == 0 && strcmp(n->id, r->id) != 0);
			CHECK(n->status == UH_RUN_QUEUED);
			CHECK(uh_retry_attempt(n) == a + 1);
			CHECK(uh_retry_not_before(n) == now + want[a] * 1000000);
			CHECK(json_equal(n->parameters, r->parameters) &&
			      json_equal(n->effective_config, r->effective_config));
			CHECK_STR(json_string_value(json_object_get(json_object_get(n->spec, "env"), "UHUB_RUN_ID")),
			          n->id);
			CHECK_STR(n->backend, "local");
		}
		uh_run_free(n);
		uh_run_free(r);
	}
	r = ended(UH_RUN_ERROR, 3, 3);
	CHECK(uh_retry_next(r, now) == NULL); /* the fourth would exceed retries */
	uh_run_free(r);
	/* capped at 5 minutes */
	r = ended(UH_RUN_ERROR, 100, 40);
	struct uh_run *n = uh_retry_next(r, now);
	CHECK(n && uh_retry_not_before(n) == now + (int64_t)UH_RETRY_BACKOFF_MAX_S * 1000000);
	uh_run_free(n);
	uh_run_free(r);
}

static struct uh_run *stored_run(struct uh_store *s, const char *pid, const char *jid, int64_t finished_at)
{
	struct uh_run *r = ended(UH_RUN_QUEUED, 0, 0);
	uh_id_new("r_", r->id);
	snprintf(r->job_id, sizeof(r->job_id), "%s", jid);
	snprintf(r->project_id, sizeof(r->project_id), "%s", pid);
	r->status = UH_RUN_QUEUED;
	json_object_set_new(r->spec, "max_concurrent", json_integer(1));
	struct uh_audit_in a = {"system", "run.create", r->id, NULL};
	struct uh_run *existing = NULL;
	struct uh_error e = {0};
	CHECK(uh_store_run_create(s, r, NULL, NULL, NULL, &a, &existing, &e) == 0);
	if (finished_at) {
		struct uh_run_update u = {.from = UH_RUN_QUEUED, .to = UH_RUN_CANCELED, .finished_at = finished_at};
		struct uh_audit_in t = {"system", "run.finish", r->id, NULL};
		CHECK(uh_store_run_transition(s, r->id, &u, &t, &e) == 0);
		struct uh_log_chunk c = {r->id, 0, 1, 1, "out\n", 4};
		CHECK(uh_store_log_write(s, &c, 1, NULL, 0, &e) == 0);
	}
	return r;
}

static void test_store(void)
{
	char dir[] = "/tmp/uh-rc-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char url[256], head[256];
	snprintf(url, sizeof(url), "sqlite:%s/db", dir);
	snprintf(head, sizeof(head), "%s/head", dir);
	struct uh_store_options o = {.audit_key = KEY, .audit_head_path = head};
	struct uh_store *s = NULL;
	struct uh_error e = {0};
	CHECK(uh_store_open(url, &o, &s, &e) == 0);
	if (!s)
		return;
	json_t *pf = json_pack("{s:s,s:s,s:s,s:{},s:n,s:n}", "name", "p", "environment", "dev", "execution_backend",
	                       "local", "execution_backend_config", "vault_prefix", "max_concurrent");
	json_t *project = NULL, *job = NULL;
	struct uh_audit_in a = {"system", "x.create", NULL, NULL};
	CHECK(uh_store_project_create(s, pf, &a, &project, &e) == 0);
	const char *pid = json_string_value(json_object_get(project, "id"));
	json_t *jf = json_pack("{s:s,s:[s],s:n,s:n,s:b,s:{},s:{},s:[],s:i,s:i}", "name", "j", "command", "/bin/true",
	                       "execution_backend", "execution_backend_config", "critical", 0, "env", "secrets",
	                       "parameters", "max_concurrent", 1, "retries", 0);
	CHECK(uh_store_job_create(s, pid, jf, &a, &job, &e) == 0);
	const char *jid = json_string_value(json_object_get(job, "id"));

	/* queue positions: 1, 2, 3 in trigger order; a run that left the queue leaves a gap */
	struct uh_run *q[3];
	for (int i = 0; i < 3; i++)
		q[i] = stored_run(s, pid, jid, 0);
	for (int i = 0; i < 3; i++) {
		struct uh_run *got = NULL;
		CHECK(uh_store_run_get(s, q[i]->id, &got, &e) == 0);
		CHECK(got && got->queue_position == i + 1);
		uh_run_free(got);
	}
	struct uh_run_update u = {.from = UH_RUN_QUEUED, .to = UH_RUN_CANCELED, .finished_at = uh_now_us()};
	struct uh_audit_in t = {"system", "run.finish", q[0]->id, NULL};
	CHECK(uh_store_run_transition(s, q[0]->id, &u, &t, &e) == 0);
	struct uh_run *got = NULL;
	CHECK(uh_store_run_get(s, q[2]->id, &got, &e) == 0 && got->queue_position == 2);
	uh_run_free(got);
	CHECK(uh_store_run_get(s, q[0]->id, &got, &e) == 0 && got->queue_position == 0);
	uh_run_free(got);

	/* retention: old finished runs go in batches, recent and unfinished stay */
	int64_t now = uh_now_us(), old = now - 10LL * 86400 * 1000000;
	struct uh_run *olds[5];
	for (int i = 0; i < 5; i++)
		olds[i] = stored_run(s, pid, jid, old);
	int64_t n = -1;
	CHECK(uh_store_runs_prune(s, now - 86400LL * 1000000, 2, &n, &e) == 0 && n == 2);
	CHECK(uh_store_runs_prune(s, now - 86400LL * 1000000, 2, &n, &e) == 0 && n == 2);
	CHECK(uh_store_runs_prune(s, now - 86400LL * 1000000, 2, &n, &e) == 0 && n == 1);
	CHECK(uh_store_runs_prune(s, now - 86400LL * 1000000, 2, &n, &e) == 0 && n == 0);
	CHECK(uh_store_incremental_vacuum(s, 100, &e) == 0);
	for (int i = 0; i < 5; i++) {
		CHECK(uh_store_run_get(s, olds[i]->id, &got, &e) == UH_E_NOT_FOUND);
		int64_t end = -1;
		CHECK(uh_store_log_end(s, olds[i]->id, &end, &e) == 0 && end == 0);
		uh_run_free(olds[i]);
	}
	for (int i = 0; i < 3; i++) {
		CHECK(uh_store_run_get(s, q[i]->id, &got, &e) == 0);
		uh_run_free(got);
		uh_run_free(q[i]);
	}
	json_t *items = NULL;
	char next[UH_CURSOR_MAX];
	CHECK(uh_store_audit_list(s, NULL, NULL, NULL, 100, NULL, &items, next, &e) == 0);
	int prunes = 0;
	size_t i;
	json_t *ev;
	json_array_foreach(items, i, ev) if (strcmp(json_string_value(json_object_get(ev, "action")), "run.prune") == 0)
	    prunes++;
	CHECK(prunes == 3);
	json_decref(items);
	json_t *v = NULL;
	CHECK(uh_store_audit_verify(s, &v, &e) == 0 && json_is_true(json_object_get(v, "ok")));
	json_decref(v);

	json_decref(pf);
	json_decref(jf);
	json_decref(project);
	json_decref(job);
	uh_store_close(s);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

int main(void)
{
	test_retry_chain();
	test_store();
	return uh_tap_done();
}
