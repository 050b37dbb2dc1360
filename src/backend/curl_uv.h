/* libcurl's multi interface driven by the supervisor's libuv loop (after
 * libcurl's multi-uv.c): one uv_poll per socket curl opens and one uv_timer,
 * so the requests of every run share the loop and nothing blocks it. Used by
 * the Docker and webhook backends, each with its own multi. Loop thread
 * only. */
#ifndef UH_BACKEND_CURL_UV_H
#define UH_BACKEND_CURL_UV_H

#include <curl/curl.h>
#include <stdbool.h>
#include <uv.h>

#include "util/error.h"

struct uh_curl_uv {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	/* A transfer ended (already removed from the multi); its owner is in
	 * CURLINFO_PRIVATE. */
	void (*done)(CURL *easy, CURLcode result);
	bool ready;
};

/* curl_global_init, the multi and its timer. Idempotent. */
int uh_curl_uv_init(struct uh_curl_uv *x, uv_loop_t *loop, void (*done)(CURL *easy, CURLcode result),
                    struct uh_error *err);
/* Cleans the multi up (closing its polls) and closes the timer. */
void uh_curl_uv_shutdown(struct uh_curl_uv *x);

#endif
