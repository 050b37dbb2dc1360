/* The log-ingest floor: what storing a run's output costs without uhub.
 *
 *   ingest_floor DB < OUTPUT
 *
 * Reads its stdin (a pipe from the same producer uhub's job runs) and appends
 * it to a SQLite table shaped like uhub's `logs`, the way uhub's supervisor
 * does (src/daemon/supervisor.c, src/store/sqlite_runs.c uh_store_log_write):
 * chunks of 64 KiB (CHUNK_MAX, the Local backend's read size), one
 * `BEGIN IMMEDIATE` ... `COMMIT` per 1 MiB batch (BATCH_MAX_BYTES), a
 * prepared `INSERT OR REPLACE`, WAL with synchronous=NORMAL, auto_vacuum
 * INCREMENTAL and secure_delete FAST (src/store/sqlite.c). DB must not exist.
 *
 * Prints one JSON object: bytes, chunks, transactions, seconds (first read to
 * last commit) and MiB/s.
 * Build: cc -O2 ingest_floor.c -o ingest_floor -lsqlite3 */
#define _GNU_SOURCE
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK     (64 * 1024)
#define BATCH_MAX (1u << 20)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "ingest_floor: %s: %s\n", what, sqlite3_errmsg(db));
		exit(1);
	}
}

static void exec(sqlite3 *db, const char *sql)
{
	check(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

/* Fills buf with up to CHUNK bytes (fewer only at EOF); returns the count. */
static size_t read_chunk(char *buf)
{
	size_t have = 0;
	while (have < CHUNK) {
		ssize_t n = read(0, buf + have, CHUNK - have);
		if (n > 0)
			have += (size_t)n;
		else if (n == 0)
			break;
		else if (errno != EINTR) {
			perror("ingest_floor: read");
			exit(1);
		}
	}
	return have;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ingest_floor DB < OUTPUT\n");
		return 64;
	}
	if (access(argv[1], F_OK) == 0) {
		fprintf(stderr, "ingest_floor: %s exists\n", argv[1]);
		return 1;
	}
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "ingest_floor: open %s: %s\n", argv[1], db ? sqlite3_errmsg(db) : "out of memory");
		return 1;
	}
	exec(db, "PRAGMA synchronous = NORMAL; PRAGMA secure_delete = FAST; PRAGMA auto_vacuum = INCREMENTAL;"
	         " PRAGMA journal_mode = WAL");
	exec(db, "CREATE TABLE logs (run_id TEXT NOT NULL, off INTEGER NOT NULL, t INTEGER NOT NULL,"
	         " stream INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (run_id, off))");
	sqlite3_stmt *ins = NULL;
	check(db,
	      sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO logs(run_id, off, t, stream, data) VALUES (?, ?, ?, ?, ?)",
	                         -1, &ins, NULL),
	      "prepare");
	/* A whole batch is held in memory before its transaction, as uhub does. */
	char *batch = malloc(BATCH_MAX + CHUNK);
	size_t lens[BATCH_MAX / CHUNK + 1];
	if (!batch) {
		fprintf(stderr, "ingest_floor: out of memory\n");
		return 1;
	}
	static const char run_id[] = "r_0123456789abcdef0123456789";
	long long off = 0, chunks = 0, txns = 0;
	double t0 = 0;
	for (;;) {
		size_t nb = 0, bytes = 0;
		while (bytes < BATCH_MAX) {
			size_t n = read_chunk(batch + bytes);
			if (!t0)
				t0 = now_s();
			if (!n)
				break;
			lens[nb++] = n;
			bytes += n;
		}
		if (!nb)
			break;
		exec(db, "BEGIN IMMEDIATE");
		size_t pos = 0;
		for (size_t i = 0; i < nb; i++) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			sqlite3_bind_text(ins, 1, run_id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ins, 2, off);
			sqlite3_bind_int64(ins, 3, (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
			sqlite3_bind_int(ins, 4, 1);
			sqlite3_bind_blob64(ins, 5, batch + pos, lens[i], SQLITE_STATIC);
			check(db, sqlite3_step(ins), "insert");
			sqlite3_reset(ins);
			off += (long long)lens[i];
			pos += lens[i];
			chunks++;
		}
		exec(db, "COMMIT");
		txns++;
		if (bytes < BATCH_MAX)
			break;
	}
	double dt = now_s() - t0;
	sqlite3_finalize(ins);
	sqlite3_close(db);
	free(batch);
	printf("{\"bytes\": %lld, \"chunks\": %lld, \"transactions\": %lld, \"seconds\": %.6f, \"mib_s\": %.2f}\n", off,
	       chunks, txns, dt, dt > 0 ? off / 1048576.0 / dt : 0.0);
	return 0;
}
