/* See curl_uv.h. */
#include "backend/curl_uv.h"

#include <stdlib.h>

struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	struct uh_curl_uv *x;
};

static void check_done(struct uh_curl_uv *x)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(x->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *e = m->easy_handle;
		CURLcode cc = m->data.result;
		curl_multi_remove_handle(x->multi, e);
		x->done(e, cc);
	}
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sock_ctx *c = p->data;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(c->x->multi, c->fd, flags, &running);
	check_done(c->x);
}

static void on_timer(uv_timer_t *t)
{
	struct uh_curl_uv *x = t->data;
	int running;
	curl_multi_socket_action(x->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(x);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct uh_curl_uv *x = userp;
	(void)multi;
	/* 0 means "now": a 0 ms timer runs on the loop's next turn. (Rounding
	 * it up to 1 ms, as this once did, put about a millisecond between
	 * each request of a Docker run and the one before.) */
	if (timeout_ms < 0)
		uv_timer_stop(&x->timer);
	else
		uv_timer_start(&x->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

static void free_ctx(uv_handle_t *h)
{
	free(h->data);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
	struct uh_curl_uv *x = userp;
	struct sock_ctx *c = socketp;
	(void)easy;
	if (action == CURL_POLL_REMOVE) {
		if (c) {
			uv_poll_stop(&c->poll);
			uv_close((uv_handle_t *)&c->poll, free_ctx);
			curl_multi_assign(x->multi, s, NULL);
		}
		return 0;
	}
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return -1;
		c->fd = s;
		c->x = x;
		if (uv_poll_init_socket(x->loop, &c->poll, s)) {
			free(c);
			return -1;
		}
		c->poll.data = c;
		curl_multi_assign(x->multi, s, c);
	}
	int ev = 0;
	if (action & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (action & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&c->poll, ev, on_poll);
	return 0;
}

int uh_curl_uv_init(struct uh_curl_uv *x, uv_loop_t *loop, void (*done)(CURL *easy, CURLcode result),
                    struct uh_error *err)
{
	if (x->ready)
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT))
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot initialise libcurl");
	x->loop = loop;
	x->done = done;
	x->multi = curl_multi_init();
	if (!x->multi)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "cannot create a libcurl multi handle");
	curl_multi_setopt(x->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(x->multi, CURLMOPT_SOCKETDATA, x);
	curl_multi_setopt(x->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(x->multi, CURLMOPT_TIMERDATA, x);
	uv_timer_init(loop, &x->timer);
	x->timer.data = x;
	uv_unref((uv_handle_t *)&x->timer);
	x->ready = true;
	return 0;
}

void uh_curl_uv_shutdown(struct uh_curl_uv *x)
{
	if (!x->ready)
		return;
	curl_multi_cleanup(x->multi); /* removes its sockets: on_curl_socket closes the polls */
	x->multi = NULL;
	uv_timer_stop(&x->timer);
	if (!uv_is_closing((uv_handle_t *)&x->timer))
		uv_close((uv_handle_t *)&x->timer, NULL);
	x->ready = false;
}
