/* The spawn floor: what the kernel and libc alone cost to run a process.
 *
 *   floor latency N [PATH [GAP_MS]] N sequential posix_spawn + waitpid of PATH (GAP_MS idle before each)
 *   floor throughput SECONDS K [PATH]  K threads, each looping posix_spawn + waitpid
 *
 * PATH defaults to /bin/true. Prints one JSON object on stdout; times in
 * microseconds. Build: cc -O2 -pthread floor.c -o floor */
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *path = "/bin/true";
static int gap_ms;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* One spawn and its reap; 0 on success (exit status 0). */
static int spawn_wait(void)
{
	char *argv[] = {(char *)path, NULL};
	pid_t pid;
	int r = posix_spawn(&pid, path, NULL, NULL, argv, environ);
	if (r != 0) {
		fprintf(stderr, "floor: posix_spawn %s: %s\n", path, strerror(r));
		return -1;
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

static int latency(long n)
{
	double *v = calloc((size_t)n, sizeof(*v));
	if (!v)
		return 1;
	for (int i = 0; i < 20; i++) /* warm the page cache and the allocator */
		if (spawn_wait())
			return 1;
	double sum = 0;
	for (long i = 0; i < n; i++) {
		if (gap_ms > 0)
			usleep((useconds_t)gap_ms * 1000);
		double t0 = now_us();
		if (spawn_wait())
			return 1;
		v[i] = now_us() - t0;
		sum += v[i];
	}
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	printf("{\"mode\":\"latency\",\"path\":\"%s\",\"gap_ms\":%d,\"n\":%ld,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_"
	       "us\":%.1f,"
	       "\"min_us\":%.1f}\n",
	       path, gap_ms, n, pct(v, (size_t)n, 50), pct(v, (size_t)n, 99), sum / (double)n, v[0]);
	free(v);
	return 0;
}

static double deadline;
static atomic_long done, failed;

static void *worker(void *arg)
{
	while (now_us() < deadline) {
		if (spawn_wait())
			atomic_fetch_add(&failed, 1);
		else
			atomic_fetch_add(&done, 1);
	}
	return NULL;
}

static int throughput(double seconds, int k)
{
	pthread_t t[256];
	if (k < 1 || k > 256)
		return 1;
	for (int i = 0; i < 20; i++)
		if (spawn_wait())
			return 1;
	double t0 = now_us();
	deadline = t0 + seconds * 1e6;
	for (int i = 0; i < k; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < k; i++)
		pthread_join(t[i], NULL);
	double el = (now_us() - t0) / 1e6;
	printf("{\"mode\":\"throughput\",\"path\":\"%s\",\"in_flight\":%d,\"seconds\":%.3f,\"done\":%ld,\"errors\":%ld,"
	       "\"per_s\":%.1f}\n",
	       path, k, el, atomic_load(&done), atomic_load(&failed), (double)atomic_load(&done) / el);
	return atomic_load(&failed) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "latency") == 0) {
		if (argc >= 4)
			path = argv[3];
		if (argc >= 5)
			gap_ms = atoi(argv[4]);
		return latency(atol(argv[2]) > 0 ? atol(argv[2]) : 1000);
	}
	if (argc >= 4 && strcmp(argv[1], "throughput") == 0) {
		if (argc >= 5)
			path = argv[4];
		return throughput(atof(argv[2]), atoi(argv[3]));
	}
	fprintf(stderr, "usage: floor latency N [PATH [GAP_MS]] | floor throughput SECONDS K [PATH]\n");
	return 64;
}
