/* Internals of the Docker backend shared by docker*.c (not for other modules). */
#ifndef UH_BACKEND_DOCKER_IMPL_H
#define UH_BACKEND_DOCKER_IMPL_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "util/buf.h"
#include "util/error.h"

/* ---- docker_stream.c: the attach stream's 8-byte-header frames ---- */

/* Docker multiplexes a non-TTY attach stream in frames: byte 0 the stream
 * (0 stdin, 1 stdout, 2 stderr), bytes 1-3 zero, bytes 4-7 the payload
 * length big-endian, then the payload. The demultiplexer takes the stream
 * cut anywhere and hands each payload piece on as it arrives (a frame may
 * be delivered in several calls; nothing is buffered but a partial header). */
struct dk_demux {
	unsigned char hdr[8];
	size_t hlen;   /* header bytes held */
	uint32_t left; /* payload bytes of the current frame still to come */
	int stream;    /* of the current frame: 1 stdout, 2 stderr */
	bool broken;   /* a bad header was seen: the rest is refused */
};

typedef void (*dk_frame_fn)(void *arg, int stream, const char *data, size_t len);

/* Feed bytes. Returns 0, or -1 once the stream is malformed (unknown stream
 * byte or non-zero padding); then nothing more is delivered. */
int dk_demux_feed(struct dk_demux *d, const char *data, size_t len, dk_frame_fn fn, void *arg);
/* True if the stream ended cleanly (not inside a frame). */
bool dk_demux_clean_end(const struct dk_demux *d);

/* ---- docker_api.c: the Engine API client on the supervisor's loop ---- */

struct dk_req;
typedef void (*dk_req_fn)(struct dk_req *q);

struct dk_req {
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	struct uh_buf resp; /* response body, capped */
	long status;        /* HTTP status, 0 if none */
	CURLcode cc;        /* transfer result */
	bool headers_seen;  /* the final response's headers are in */
	bool in_multi;
	bool stop_at_line; /* end the transfer once a whole line is in (cc CURLE_WRITE_ERROR) */
	char errbuf[CURL_ERROR_SIZE];
	dk_req_fn on_headers; /* optional: once, when the final headers are in */
	dk_req_fn done;       /* once, when the transfer is over (not after dk_req_cancel) */
	void *arg;
};

/* Engine API client set-up (idempotent) and tear-down. */
int dk_api_init(uv_loop_t *loop, struct uh_error *err);
void dk_api_shutdown(void);

/* The engine address, parsed from docker.host. */
struct dk_host {
	bool unix_sock;
	char path[108]; /* unix socket path */
	char base[300]; /* "http://localhost" or "https://host:port" or "http://host:port" */
	char hostport[256];
};
int dk_host_parse(const struct uh_config *cfg, struct dk_host *out, struct uh_error *err);

/* Start a request: METHOD base/vX.Y/PATH (path starting with '/', already
 * URL-encoded; api_version "" means unversioned). body may be NULL (JSON
 * otherwise). timeout_ms 0: no total timeout. Returns NULL on set-up
 * failure (out of memory, bad host). done() is always called later. */
struct dk_req *dk_req_start(const struct uh_config *cfg, const char *api_version, const char *method, const char *path,
                            const char *body, long timeout_ms, size_t max_resp, dk_req_fn done, dk_req_fn on_headers,
                            void *arg);
/* The same with a body of any type (ctype_header: "Content-Type: ..."). */
struct dk_req *dk_req_start_raw(const struct uh_config *cfg, const char *api_version, const char *method,
                                const char *path, const void *body, size_t body_len, const char *ctype_header,
                                long timeout_ms, size_t max_resp, dk_req_fn done, dk_req_fn on_headers, void *arg);
/* GET /_ping on a new connection (not one kept alive). */
struct dk_req *dk_req_ping(const struct uh_config *cfg, dk_req_fn done, void *arg);
/* Abort a request in flight: done() is not called. Frees it. */
void dk_req_cancel(struct dk_req *q);
/* Free a finished request (from done() or after). */
void dk_req_free(struct dk_req *q);
/* True if the request failed below HTTP (engine unreachable, connection cut). */
bool dk_req_transport_failed(const struct dk_req *q);
/* Parsed JSON body of a finished request, or NULL. */
json_t *dk_req_json(const struct dk_req *q);
/* The engine's `message` of an error answer, or the transport error. */
void dk_req_describe(const struct dk_req *q, char *out, size_t size);

/* Blocking request (start-up only: settle). Returns the HTTP status, or -1
 * when the engine cannot be reached. resp may be NULL. */
long dk_sync_request(const struct uh_config *cfg, const char *api_version, const char *method, const char *path,
                     long timeout_ms, struct uh_buf *resp);

/* An RFC 3339 time of the engine (State.StartedAt, FinishedAt; read by
 * uh_time_parse, to the microsecond) plus add_ms, as the
 * "SECONDS.NANOSECONDS" its events API takes in since= and until=. False for
 * anything else, a time before 1970 (the engine's zero time is year 1) or an
 * output that does not fit. */
bool dk_engine_time(const char *s, int64_t add_ms, char *out, size_t size);

/* URL-encode s into out (size bytes); false if it does not fit. */
bool dk_urlencode(const char *s, char *out, size_t size);

/* Open a non-blocking stream socket to the engine (unix socket or plain
 * TCP with a numeric address) for the hijacked attach connection. Returns
 * the fd (O_CLOEXEC|O_NONBLOCK), connect possibly in progress, or -errno. */
int dk_raw_connect(const struct dk_host *hst);
/* 0 if dk_raw_connect can reach the host (a unix socket, or tcp://IPV4:PORT). */
int dk_raw_check(const struct dk_host *hst);

/* ---- docker.c: config checks shared by validate() and start() ---- */

struct dk_conf {
	const char *image;
	uint32_t uid, gid;
	const char *network; /* "none" or an allowed network */
	const char *pull_policy;
	int64_t pids_limit;
	int64_t cpu_milli; /* 0: none given */
	int64_t mem_bytes; /* 0: none given */
};

int dk_conf_parse(const struct uh_config *cfg, const json_t *config, struct dk_conf *c, struct uh_error *err);
bool dk_glob_match(const char *pattern, const char *s);

#endif
