/* The Docker backend, driven directly on a libuv loop with a fake host,
 * against the real engine (scripts/docker-env.sh sets it up; without an
 * engine only the pure checks run). Waits on conditions with deadlines,
 * never on bare sleeps. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "backend/backend.h"
#include "backend/docker_impl.h"
#include "core/config.h"
#include "tap.h"
#include "util/buf.h"
#include "util/crypto.h"
#include "util/time.h"

#define IMAGE "uhub-test/busybox:1"

static uv_loop_t loop;
static struct uh_config cfg;

/* ---- fake host ---- */

struct out {
	struct uh_buf out, err;
	int persisted, finished, late_output;
	struct uh_run_result res;
	char ext[256];
};

static void h_output(struct uh_run_handle *h, enum uh_stream s, const char *d, size_t n)
{
	struct out *o = h->host_data;
	o->late_output += o->finished;
	uh_buf_append(s == UH_STREAM_STDERR ? &o->err : &o->out, d, n);
}

static void h_persist(struct uh_run_handle *h)
{
	struct out *o = h->host_data;
	o->persisted++;
	snprintf(o->ext, sizeof(o->ext), "%s", h->external_id);
}

static void h_finished(struct uh_run_handle *h, const struct uh_run_result *res)
{
	struct out *o = h->host_data;
	o->finished++;
	o->res = *res;
}

static const struct uh_backend_host host = {.output = h_output, .persist = h_persist, .finished = h_finished};

struct run {
	struct uh_run_handle *h;
	struct out o;
	char id[UH_ID_MAX];
	int rc;
	struct uh_error err;
};

static void tick(uv_timer_t *t)
{
	(void)t;
}

static bool wait_for(bool (*cond)(void *), void *arg, int timeout_ms)
{
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, tick, 5, 5);
	int64_t end = uh_mono_us() + (int64_t)timeout_ms * 1000;
	bool ok;
	while (!(ok = cond(arg)) && uh_mono_us() < end)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return ok;
}

static bool is_finished(void *a)
{
	return ((struct run *)a)->o.finished > 0;
}

static bool is_persisted(void *a)
{
	return ((struct run *)a)->o.persisted > 0;
}

static bool has_output(void *a)
{
	struct run *r = a;
	return r->o.out.data && strstr(r->o.out.data, "READY");
}

static void run_start_cfg(struct run *r, const struct uh_config *c, const char *command, const char *config,
                          const struct uh_secret_env *secrets, size_t n_secrets)
{
	memset(r, 0, sizeof(*r));
	uh_buf_init(&r->o.out, 1 << 24);
	uh_buf_init(&r->o.err, 1 << 24);
	uh_id_new("r_", r->id);
	json_t *cmd = json_loads(command, 0, NULL);
	json_t *conf = json_loads(config ? config : "{\"image\": \"" IMAGE "\"}", 0, NULL);
	json_t *en = json_pack("{s:s, s:s}", "UHUB_RUN_ID", r->id, "PLAIN", "plain-value");
	if (!cmd || !conf)
		fprintf(stderr, "bad test json: %s %s\n", command, config ? config : "");
	struct uh_run_spec spec = {
	    .run_id = r->id,
	    .job_id = "j_test",
	    .job_name = "test",
	    .project_id = "p_test",
	    .project_name = "test",
	    .backend = "docker",
	    .config = conf,
	    .command = cmd,
	    .env = en,
	    .secrets = secrets,
	    .n_secrets = n_secrets,
	    .timeout_s = 120,
	};
	r->rc = uh_backend_start(&uh_backend_docker, &host, &r->o, &loop, c, &spec, &r->h, &r->err);
	if (r->rc)
		fprintf(stderr, "# start: %s\n", r->err.message);
	json_decref(cmd);
	json_decref(conf);
	json_decref(en);
}

static void run_release(struct run *r)
{
	if (r->rc == 0) {
		CHECK(r->o.finished == 1);
		CHECK(r->o.late_output == 0);
		uh_backend_release(r->h);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	uh_buf_free(&r->o.out);
	uh_buf_free(&r->o.err);
}

static const char *out_of(struct run *r)
{
	return r->o.out.data ? r->o.out.data : "";
}

/* Containers labelled with the run id, as the engine lists them (-1: no engine). */
static int containers_of(const char *run_id)
{
	char f[300], enc[600], path[800];
	snprintf(f, sizeof(f), "{\"label\":[\"uhub.run_id=%s\"]}", run_id);
	dk_urlencode(f, enc, sizeof(enc));
	snprintf(path, sizeof(path), "/containers/json?all=1&filters=%s", enc);
	struct uh_buf b;
	long st = dk_sync_request(&cfg, "", "GET", path, 5000, &b);
	int n = -1;
	if (st == 200) {
		json_t *j = json_loadb(b.data, b.len, 0, NULL);
		n = (int)json_array_size(j);
		json_decref(j);
	}
	uh_buf_free(&b);
	return n;
}

/* ---- pure checks ---- */

static void collect(void *arg, int stream, const char *d, size_t n)
{
	struct uh_buf *b = arg;
	char tag = stream == 2 ? 'E' : 'O';
	uh_buf_append(b, &tag, 1);
	uh_buf_append(b, d, n);
}

static void test_demux(void)
{
	const char s[] = "\x01\0\0\0\0\0\0\x03"
	                 "abc"
	                 "\x02\0\0\0\0\0\0\x02"
	                 "de"
	                 "\x01\0\0\0\0\0\0\0";
	size_t n = sizeof(s) - 1;
	for (size_t cut = 0; cut <= n; cut++) {
		struct dk_demux d = {0};
		struct uh_buf b = UH_BUF_INIT(1024);
		CHECK(dk_demux_feed(&d, s, cut, collect, &b) == 0);
		CHECK(dk_demux_feed(&d, s + cut, n - cut, collect, &b) == 0);
		CHECK(dk_demux_clean_end(&d));
		/* pieces may be split: compare the bytes of each stream */
		struct uh_buf o = UH_BUF_INIT(64), e = UH_BUF_INIT(64);
		for (size_t i = 0; i < b.len;) {
			char tag = b.data[i++];
			size_t j = i;
			while (j < b.len && b.data[j] != 'O' && b.data[j] != 'E')
				j++;
			uh_buf_append(tag == 'E' ? &e : &o, b.data + i, j - i);
			i = j;
		}
		CHECK_STR(o.data ? o.data : "", "abc");
		CHECK_STR(e.data ? e.data : "", "de");
		uh_buf_free(&b);
		uh_buf_free(&o);
		uh_buf_free(&e);
	}
	struct dk_demux d = {0};
	struct uh_buf b = UH_BUF_INIT(1024);
	CHECK(dk_demux_feed(&d, "\x07\0\0\0\0\0\0\x01x", 9, collect, &b) == -1);
	CHECK(dk_demux_feed(&d, "\x01\0\0\0\0\0\0\x01x", 9, collect, &b) == -1);
	CHECK(b.len == 0);
	uh_buf_free(&b);
}

/* The engine's RFC 3339 times as its events API's since=/until=. */
static void test_engine_time(void)
{
	static const struct {
		const char *in;
		int64_t add_ms;
		const char *out; /* NULL: refused */
	} cases[] = {
	    {"2026-12-05T12:10:11.123456789Z", 0, "1796472611.123456000"},
	    {"2026-12-05T12:10:11.123456789Z", 1000, "1796472612.123456000"},
	    {"2026-12-05T12:10:11.123456789Z", -1000, "1796472610.123456000"},
	    {"2026-12-05T12:10:11.5Z", 600, "1796472612.100000000"},
	    {"2026-12-05T12:10:11.5Z", -600, "1796472610.900000000"},
	    {"2026-12-05T12:10:11Z", 0, "1796472611.000000000"},
	    {"2026-12-05T12:10:11.1234567891234Z", 0, "1796472611.123456000"},
	    {"2026-12-05T13:10:11.000001+01:00", 0, "1796472611.000001000"},
	    {"2026-12-05T11:40:11-00:30", 0, "1796472611.000000000"},
	    {"0001-01-01T00:00:00Z", 0, NULL}, /* the engine's zero time */
	    {"2026-12-05T12:10:11", 0, NULL},
	    {"2026-12-05T12:10:11.Z", 0, NULL},
	    {"2026-13-05T12:10:11Z", 0, NULL},
	    {"2026-12-05T24:10:11Z", 0, NULL},
	    {" 026-12-05T12:10:11Z", 0, NULL},
	    {"2026-12-05T12:10:+1Z", 0, NULL},
	    {"2026-12-05T12:10:11Zx", 0, NULL},
	    {"2026-12-05T12:10:11+1:00", 0, NULL},
	    {"1970-01-01T00:00:00Z", -1000, NULL},
	    {"", 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[32] = "";
		bool ok = dk_engine_time(cases[i].in, cases[i].add_ms, out, sizeof(out));
		CHECK(ok == (cases[i].out != NULL));
		if (ok && cases[i].out)
			CHECK_STR(out, cases[i].out);
	}
	char small[8];
	CHECK(!dk_engine_time("2026-12-05T12:10:11Z", 0, small, sizeof(small)));
	CHECK(!dk_engine_time(NULL, 0, small, sizeof(small)));
}

static int validate(const char *config, const char *command, struct uh_error *e)
{
	json_t *c = json_loads(config, 0, NULL);
	json_t *cmd = json_loads(command ? command : "[\"true\"]", 0, NULL);
	memset(e, 0, sizeof(*e));
	int r = uh_backend_validate(&cfg, "docker", c, cmd, NULL, e);
	json_decref(c);
	json_decref(cmd);
	return r;
}

static void test_validate(void)
{
	struct uh_error e;
	CHECK(validate("{\"image\":\"" IMAGE "\"}", NULL, &e) == 0);
	CHECK(validate("{}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK_STR(e.field, "execution_backend_config.image");
	const char *bad_users[] = {"nobody", "0",     "0:0",  "0:5", "5:0",          "1000",
	                           "1000:",  ":1000", "-1:5", "5:x", "99999999999:1"};
	for (size_t i = 0; i < sizeof(bad_users) / sizeof(bad_users[0]); i++) {
		char c[200];
		snprintf(c, sizeof(c), "{\"image\":\"%s\",\"user\":\"%s\"}", IMAGE, bad_users[i]);
		CHECK(validate(c, NULL, &e) == UH_E_INVALID_CONFIG);
		CHECK_STR(e.field, "execution_backend_config.user");
		CHECK(uh_errno_status(e.code) == 400);
	}
	CHECK(validate("{\"image\":\"" IMAGE "\",\"user\":\"1000:1000\"}", NULL, &e) == 0);
	CHECK(validate("{\"image\":\"" IMAGE "\",\"network\":\"host\"}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK_STR(e.field, "execution_backend_config.network");
	CHECK(validate("{\"image\":\"" IMAGE "\",\"network\":\"bridge\"}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK(validate("{\"image\":\"" IMAGE "\",\"network\":\"ci-net\"}", NULL, &e) == 0);
	CHECK(validate("{\"image\":\"" IMAGE "\",\"network\":\"none\"}", NULL, &e) == 0);
	CHECK(validate("{\"image\":\"" IMAGE "\",\"pull_policy\":\"sometimes\"}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK_STR(e.field, "execution_backend_config.pull_policy");
	CHECK(validate("{\"image\":\"" IMAGE "\",\"pull_policy\":\"never\"}", NULL, &e) == 0);
	CHECK(validate("{\"image\":\"" IMAGE "\",\"pids_limit\":0}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK_STR(e.field, "execution_backend_config.pids_limit");
	CHECK(validate("{\"image\":\"" IMAGE "\",\"pids_limit\":257}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK(validate("{\"image\":\"" IMAGE "\",\"pids_limit\":256}", NULL, &e) == 0);
	CHECK(validate("{\"image\":\"" IMAGE "\",\"privileged\":true}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK_STR(e.field, "execution_backend_config.privileged");
	CHECK(validate("{\"image\":\"evil/img:1\"}", NULL, &e) == UH_E_INVALID_CONFIG);
	CHECK_STR(e.field, "execution_backend_config.image");
	CHECK(validate("{\"image\":\"" IMAGE "\"}", "[]", &e) == UH_E_INVALID_REQUEST);
	CHECK_STR(e.field, "command");
	CHECK(validate("{\"image\":\"" IMAGE "\",\"mem_limit\":\"1Mi\"}", NULL, &e) == UH_E_INVALID_CONFIG);
}

/* ---- against the engine ---- */

static void test_hardened_run(void)
{
	static const char canary[] = "cAnArY-7f3a9-s3cr3t";
	struct uh_secret_env sec[] = {{"CANARY", canary, sizeof(canary) - 1}, {"PLAIN", "from-secret", 11}};
	struct run r;
	run_start_cfg(
	    &r, &cfg,
	    "[\"sh\", \"-c\", \"echo uid=$(id -u):$(id -g); grep -E 'CapEff|NoNewPrivs' /proc/self/status; "
	    "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat "
	    "/sys/fs/cgroup/memory.max); echo pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat "
	    "/sys/fs/cgroup/pids.max); grep -c : /proc/net/dev; grep -q lo: /proc/net/dev && echo has-lo; "
	    "touch /x 2>/dev/null || echo rofs; touch /work/w /tmp/t && echo tmpfs-ok; echo pwd=$(pwd); "
	    "echo secret=$CANARY plain=$PLAIN; read x && echo stdin-not-closed; echo to-stderr >&2; exit 3\"]",
	    "{\"image\":\"" IMAGE "\",\"mem_limit\":\"64Mi\",\"pids_limit\":100,\"cpu_limit\":\"500m\","
	    "\"user\":\"1234:2345\"}",
	    sec, 2);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	CHECK(wait_for(is_finished, &r, 30000));
	const char *o = out_of(&r);
	printf("# output: %s# stderr: %s", o, r.o.err.data ? r.o.err.data : "");
	CHECK(strstr(o, "uid=1234:2345"));
	CHECK(strstr(o, "CapEff:\t0000000000000000"));
	CHECK(strstr(o, "NoNewPrivs:\t1"));
	CHECK(strstr(o, "mem=67108864"));
	CHECK(strstr(o, "pids=100"));
	CHECK(strstr(o, "\n1\nhas-lo")); /* one interface: lo */
	CHECK(strstr(o, "rofs"));
	CHECK(strstr(o, "tmpfs-ok"));
	CHECK(strstr(o, "pwd=/work"));
	CHECK(strstr(o, "secret=cAnArY-7f3a9-s3cr3t plain=from-secret"));
	CHECK(!strstr(o, "stdin-not-closed"));
	CHECK(r.o.err.data && strstr(r.o.err.data, "to-stderr"));
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 3);
	CHECK(r.o.persisted == 1 && strncmp(r.o.ext, "container:", 10) == 0);
	CHECK(containers_of(r.id) == 0);
	run_release(&r);
}

static void test_fast_exits(void)
{
	/* Many quick runs at once: none may lose its exit status. */
	enum { N = 8 };
	struct run r[N];
	for (int i = 0; i < N; i++)
		run_start_cfg(&r[i], &cfg, i % 2 ? "[\"true\"]" : "[\"false\"]", NULL, NULL, 0);
	for (int i = 0; i < N; i++) {
		CHECK(r[i].rc == 0);
		if (r[i].rc)
			continue;
		CHECK(wait_for(is_finished, &r[i], 30000));
		CHECK(r[i].o.res.kind == UH_RESULT_EXITED);
		CHECK(r[i].o.res.exit_code == (i % 2 ? 0 : 1));
		CHECK(containers_of(r[i].id) == 0);
		run_release(&r[i]);
	}
}

static void test_big_output_and_many_runs(void)
{
	/* 8 MiB through the attach stream, stdout and stderr interleaved: every
	 * byte arrives, on the right stream. */
	struct run r;
	run_start_cfg(&r, &cfg,
	              "[\"sh\", \"-c\", \"head -c 8388608 /dev/zero | tr '\\\\0' a; echo; echo e1 >&2; "
	              "head -c 100000 /dev/zero | tr '\\\\0' b >&2\"]",
	              NULL, NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc == 0) {
		CHECK(wait_for(is_finished, &r, 60000));
		CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 0);
		CHECK(r.o.out.len == 8388608 + 1);
		CHECK(r.o.err.len == 3 + 100000);
		size_t a = 0;
		for (size_t i = 0; i < r.o.out.len; i++)
			a += r.o.out.data[i] == 'a';
		CHECK(a == 8388608);
		run_release(&r);
	}

	/* Many runs in flight on one loop, each with its own secret. */
	enum { N = 24 };
	static struct run m[N];
	char vals[N][32];
	struct uh_secret_env sec[N];
	for (int i = 0; i < N; i++) {
		snprintf(vals[i], sizeof(vals[i]), "value-%d", i);
		sec[i] = (struct uh_secret_env){"MINE", vals[i], strlen(vals[i])};
		run_start_cfg(&m[i], &cfg, "[\"sh\", \"-c\", \"echo got=$MINE; exit $(( ${MINE#value-} % 7 ))\"]", NULL,
		              &sec[i], 1);
		CHECK(m[i].rc == 0);
	}
	for (int i = 0; i < N; i++) {
		if (m[i].rc)
			continue;
		CHECK(wait_for(is_finished, &m[i], 120000));
		char want[48];
		snprintf(want, sizeof(want), "got=value-%d\n", i);
		CHECK_STR(out_of(&m[i]), want);
		CHECK(m[i].o.res.kind == UH_RESULT_EXITED && m[i].o.res.exit_code == i % 7);
		CHECK(containers_of(m[i].id) == 0);
		run_release(&m[i]);
	}
}

static void test_stop(void)
{
	struct run r;
	run_start_cfg(&r, &cfg, "[\"sh\", \"-c\", \"trap '' TERM; echo READY; sleep 60; sleep 60\"]", NULL, NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	CHECK(wait_for(has_output, &r, 20000));
	int64_t t0 = uh_mono_us();
	uh_backend_stop(r.h, 500);
	CHECK(wait_for(is_finished, &r, 20000));
	CHECK(uh_mono_us() - t0 < 8000000);
	CHECK(r.o.res.kind == UH_RESULT_SIGNALED && r.o.res.signal == SIGKILL);
	CHECK(containers_of(r.id) == 0);
	run_release(&r);

	/* Stopped at once, before the container even started. */
	run_start_cfg(&r, &cfg, "[\"sleep\", \"60\"]", NULL, NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	uh_backend_stop(r.h, 1000);
	CHECK(wait_for(is_finished, &r, 20000));
	CHECK(r.o.res.kind == UH_RESULT_SIGNALED);
	CHECK(containers_of(r.id) == 0);
	run_release(&r);

	/* Stopped once created (persisted), whatever step it is at. */
	run_start_cfg(&r, &cfg, "[\"sleep\", \"60\"]", NULL, NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	CHECK(wait_for(is_persisted, &r, 20000));
	uh_backend_stop(r.h, 0);
	CHECK(wait_for(is_finished, &r, 20000));
	CHECK(r.o.res.kind == UH_RESULT_SIGNALED);
	CHECK(containers_of(r.id) == 0);
	run_release(&r);
}

static void test_oom(void)
{
	struct run r;
	run_start_cfg(&r, &cfg, "[\"sh\", \"-c\", \"head -c 300m /dev/zero | tail -c 200m >/dev/null\"]",
	              "{\"image\":\"" IMAGE "\",\"mem_limit\":\"16Mi\"}", NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	CHECK(wait_for(is_finished, &r, 60000));
	printf("# oom: kind %d exit %d oom %d: %s\n", r.o.res.kind, r.o.res.exit_code, r.o.res.oom, r.o.res.message);
	CHECK(r.o.res.oom);
	CHECK(r.o.res.kind == UH_RESULT_SIGNALED || r.o.res.kind == UH_RESULT_EXITED);
	CHECK(containers_of(r.id) == 0);
	run_release(&r);
}

static void test_image_policy(void)
{
	struct run r;
	run_start_cfg(&r, &cfg, "[\"true\"]", "{\"image\":\"uhub-test/absent:0\",\"pull_policy\":\"never\"}", NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	CHECK(wait_for(is_finished, &r, 20000));
	CHECK(r.o.res.kind == UH_RESULT_ERROR && strcmp(r.o.res.reason, "backend_error") == 0);
	CHECK(strstr(r.o.res.message, "pull_policy"));
	CHECK(r.o.persisted == 0);
	run_release(&r);

	/* Not on the engine, pulled (no registry is reachable here): error. */
	const char *pol[] = {"if_not_present", "always"};
	for (int i = 0; i < 2; i++) {
		char conf[200];
		snprintf(conf, sizeof(conf), "{\"image\":\"uhub-test/absent:0\",\"pull_policy\":\"%s\"}", pol[i]);
		run_start_cfg(&r, &cfg, "[\"true\"]", conf, NULL, 0);
		CHECK(r.rc == 0);
		if (r.rc)
			return;
		CHECK(wait_for(is_finished, &r, 60000));
		printf("# pull %s: %s\n", pol[i], r.o.res.message);
		CHECK(r.o.res.kind == UH_RESULT_ERROR && strcmp(r.o.res.reason, "backend_error") == 0);
		CHECK(strstr(r.o.res.message, "pull") != NULL);
		CHECK(containers_of(r.id) == 0);
		run_release(&r);
	}

	/* Command not in the image: exit 127 from uhub-cinit, container gone. */
	run_start_cfg(&r, &cfg, "[\"/no/such/thing\"]", NULL, NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	CHECK(wait_for(is_finished, &r, 20000));
	CHECK(r.o.res.kind == UH_RESULT_EXITED && r.o.res.exit_code == 127);
	CHECK(containers_of(r.id) == 0);
	run_release(&r);
}

static void test_settle(void)
{
	struct run r;
	run_start_cfg(&r, &cfg, "[\"sh\", \"-c\", \"echo READY; sleep 60\"]", NULL, NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc)
		return;
	CHECK(wait_for(has_output, &r, 20000));
	CHECK(containers_of(r.id) == 1);
	struct uh_error e = {0};
	CHECK(uh_backend_settle(&cfg, "docker", r.id, r.o.ext, &e) == 0);
	CHECK(containers_of(r.id) == 0);
	CHECK(wait_for(is_finished, &r, 20000));
	run_release(&r);
}

static void test_unavailable(void)
{
	struct uh_config c2;
	struct uh_error e;
	uh_config_defaults(&c2, &e);
	free(c2.docker.host);
	c2.docker.host = strdup("unix:///nonexistent/docker.sock");
	struct run r;
	run_start_cfg(&r, &c2, "[\"true\"]", NULL, NULL, 0);
	CHECK(r.rc == UH_E_UNAVAILABLE);

	/* A socket nobody answers on: the run ends `error` backend_unavailable. */
	char path[] = "/tmp/uhub-dk-test.XXXXXX";
	CHECK(mkdtemp(path) != NULL);
	char sock[200];
	snprintf(sock, sizeof(sock), "%s/s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	close(fd); /* bound, never listening: connect is refused */
	free(c2.docker.host);
	char host2[300];
	snprintf(host2, sizeof(host2), "unix://%s", sock);
	c2.docker.host = strdup(host2);
	run_start_cfg(&r, &c2, "[\"true\"]", NULL, NULL, 0);
	CHECK(r.rc == 0);
	if (r.rc == 0) {
		CHECK(wait_for(is_finished, &r, 20000));
		CHECK(r.o.res.kind == UH_RESULT_ERROR && r.o.res.reason &&
		      strcmp(r.o.res.reason, "backend_unavailable") == 0);
		run_release(&r);
	}
	unlink(sock);
	rmdir(path);
	uh_config_free(&c2);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&loop);
	struct uh_error e;
	uh_config_defaults(&cfg, &e);
	char node[64];
	snprintf(node, sizeof(node), "unit-test-%d", (int)getpid());
	cfg.cluster.node_name = strdup(node);
	for (size_t i = 0; i < cfg.docker.allowed_images.n; i++)
		free(cfg.docker.allowed_images.v[i]);
	free(cfg.docker.allowed_images.v);
	cfg.docker.allowed_images.v = calloc(2, sizeof(char *));
	cfg.docker.allowed_images.v[0] = strdup("uhub-test/*");
	cfg.docker.allowed_images.n = 1;
	free(cfg.docker.allowed_networks.v);
	cfg.docker.allowed_networks.v = calloc(1, sizeof(char *));
	cfg.docker.allowed_networks.v[0] = strdup("ci-net");
	cfg.docker.allowed_networks.n = 1;

	test_demux();
	test_engine_time();
	test_validate();
	if (uh_backend_init_all(&cfg, &loop, &e)) {
		fprintf(stderr, "init: %s\n", e.message);
		return 1;
	}
	struct stat st;
	if (stat("/var/run/docker.sock", &st) || containers_of("none") < 0) {
		printf("# skip: no docker engine (scripts/docker-env.sh)\n");
		CHECK(!getenv("UH_REQUIRE_DOCKER")); /* scripts/test.sh requires the engine */
	} else {
		test_hardened_run();
		test_fast_exits();
		test_big_output_and_many_runs();
		test_stop();
		test_oom();
		test_image_policy();
		test_settle();
		test_unavailable();
	}
	uh_backend_shutdown_all();
	uv_run(&loop, UV_RUN_NOWAIT);
	uh_config_free(&cfg);
	return uh_tap_done();
}
