/* The Docker floors: what a hardened `true` container costs without uhub.
 *
 *   docker_floor raw N IMAGE INIT   N sequential Engine API sequences over the
 *                                   unix socket (libcurl, one keep-alive
 *                                   connection): create, start, wait, delete,
 *                                   with uhub's HostConfig (INIT: the path of
 *                                   uhub-cinit, bound read-only as uhub does)
 *   docker_floor cli N IMAGE        N sequential `docker run --rm` with the same flags
 *
 * Prints one JSON object on stdout; times in microseconds.
 * Build: cc -O2 docker_floor.c -o docker_floor -lcurl */
#include <curl/curl.h>
#include <errno.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
	if (n == 0)
		return 0;
	int i = (int)(p / 100.0 * (n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

struct resp {
	char buf[65536];
	size_t len;
};

static size_t on_write(char *d, size_t s, size_t n, void *u)
{
	struct resp *r = u;
	size_t k = s * n;
	if (r->len + k < sizeof(r->buf)) {
		memcpy(r->buf + r->len, d, k);
		r->len += k;
		r->buf[r->len] = 0;
	}
	return k;
}

static long call(CURL *c, const char *method, const char *path, const char *body, struct resp *r)
{
	char url[512];
	snprintf(url, sizeof(url), "http://localhost/v1.41%s", path);
	r->len = 0;
	r->buf[0] = 0;
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	if (curl_easy_perform(c) != CURLE_OK)
		return -1;
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

static struct resp r;

static int raw_once(CURL *c, const char *image, const char *init)
{
	char body[4096];
	snprintf(body, sizeof(body),
	         "{\"Image\":\"%s\",\"Cmd\":[\"true\"],\"User\":\"65534:65534\",\"WorkingDir\":\"/work\","
	         "\"Labels\":{\"uhub.bench\":\"floor\"},\"HostConfig\":{\"Memory\":8589934592,\"MemorySwap\":"
	         "8589934592,\"NanoCpus\":2000000000,\"PidsLimit\":256,\"CapDrop\":[\"ALL\"],\"SecurityOpt\":"
	         "[\"no-new-privileges\"],\"ReadonlyRootfs\":true,\"Privileged\":false,\"Tmpfs\":{\"/work\":"
	         "\"rw,exec,nosuid,nodev,mode=0700,uid=65534,gid=65534\",\"/tmp\":\"rw,exec,nosuid,nodev,mode=1777\"},"
	         "\"NetworkMode\":\"none\",\"Binds\":[\"%s:/.uhub/init:ro\"],\"LogConfig\":{\"Type\":\"none\","
	         "\"Config\":{}}},\"NetworkDisabled\":true}",
	         image, init);
	if (call(c, "POST", "/containers/create", body, &r) != 201)
		return fprintf(stderr, "create: %s\n", r.buf), -1;
	char *p = strstr(r.buf, "\"Id\":\"");
	if (!p)
		return -1;
	char id[80];
	snprintf(id, sizeof(id), "%.64s", p + 6);
	char path[200];
	snprintf(path, sizeof(path), "/containers/%s/start", id);
	int rc = 0;
	long st = call(c, "POST", path, NULL, &r);
	if (st != 204) {
		fprintf(stderr, "start: %ld %s\n", st, r.buf);
		rc = -1;
	}
	snprintf(path, sizeof(path), "/containers/%s/wait?condition=not-running", id);
	if (!rc && (call(c, "POST", path, NULL, &r) != 200 || !strstr(r.buf, "\"StatusCode\":0")))
		rc = -1;
	snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
	if (call(c, "DELETE", path, NULL, &r) != 204)
		rc = -1;
	return rc;
}

static int cli_once(const char *image)
{
	char *argv[] = {"docker",
	                "run",
	                "--rm",
	                "--user",
	                "65534:65534",
	                "--workdir",
	                "/work",
	                "--memory",
	                "8g",
	                "--memory-swap",
	                "8g",
	                "--cpus",
	                "2",
	                "--pids-limit",
	                "256",
	                "--cap-drop",
	                "ALL",
	                "--security-opt",
	                "no-new-privileges",
	                "--read-only",
	                "--tmpfs",
	                "/work:rw,exec,nosuid,nodev,mode=0700,uid=65534,gid=65534",
	                "--tmpfs",
	                "/tmp:rw,exec,nosuid,nodev,mode=1777",
	                "--network",
	                "none",
	                "--log-driver",
	                "none",
	                "--label",
	                "uhub.bench=cli",
	                (char *)image,
	                "true",
	                NULL};
	pid_t pid;
	if (posix_spawnp(&pid, "docker", NULL, NULL, argv, environ))
		return -1;
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 4 || (strcmp(argv[1], "raw") == 0 && argc < 5)) {
		fprintf(stderr, "usage: docker_floor raw N IMAGE INIT | docker_floor cli N IMAGE\n");
		return 64;
	}
	bool raw = strcmp(argv[1], "raw") == 0;
	int n = atoi(argv[2]);
	if (n < 1)
		n = 1;
	double *t = calloc((size_t)n, sizeof(*t));
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, "/var/run/docker.sock");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	int errors = 0;
	/* one warm-up, not counted */
	if (raw ? raw_once(c, argv[3], argv[4]) : cli_once(argv[3]))
		errors++;
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		if (raw ? raw_once(c, argv[3], argv[4]) : cli_once(argv[3]))
			errors++;
		t[i] = now_us() - t0;
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	printf("{\"mode\":\"%s\",\"n\":%d,\"errors\":%d,\"p50_us\":%.0f,\"p99_us\":%.0f,\"min_us\":%.0f}\n", argv[1], n,
	       errors, pct(t, n, 50), pct(t, n, 99), t[0]);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(t);
	return errors ? 1 : 0;
}
