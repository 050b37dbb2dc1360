/* The HTTP floor: the least a keep-alive HTTP/1.1 server can do per request.
 *
 *   miniserver [PORT]
 *
 * One thread, epoll, non-blocking sockets on 127.0.0.1 (PORT 0 or none: any
 * free port, printed as "listening on http://127.0.0.1:PORT"). Every request
 * (headers up to the blank line, plus a Content-Length body) gets the same
 * 200 answer: a fixed JSON object shaped and sized like a uhub run, so the
 * bytes on the wire match what GET /api/v1/runs/{id} sends. No parsing beyond
 * framing, no routing, no auth: a floor, not a server.
 * Build: cc -O2 miniserver.c -o miniserver */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY                                                                                                         \
	"{\"id\":\"run_0123456789abcdef0123456789abcdef\",\"job_id\":\"job_0123456789abcdef0123456789abcdef\","      \
	"\"project_id\":\"prj_0123456789abcdef0123456789abcdef\",\"status\":\"succeeded\",\"reason\":\"exit_code\"," \
	"\"message\":\"exited with status 0\",\"backend\":\"local\",\"parameters\":{},"                              \
	"\"requested_by\":\"usr_0123456789abcdef0123456789abcdef\",\"approved_by\":null,\"rejected_by\":null,"       \
	"\"canceled_by\":null,\"comments\":[],\"created_at\":\"2024-01-01T00:00:00.000000Z\","                       \
	"\"started_at\":\"2024-01-01T00:00:00.001000Z\",\"finished_at\":\"2024-01-01T00:00:00.002000Z\","            \
	"\"exit_code\":0,\"external_id\":\"12345\",\"log_truncated\":false,\"retry_of\":null,"                       \
	"\"effective_config\":{\"timeout_seconds\":3600}}"

static char resp[2048];
static size_t resp_len;

struct conn {
	int fd;
	char in[16384];
	size_t in_len;
	size_t skip; /* body bytes of the current request still to discard */
	char *out;
	size_t out_len, out_cap, out_off;
};

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	free(c);
}

static int queue(struct conn *c, const char *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
		while (cap < c->out_len + n)
			cap *= 2;
		char *o = realloc(c->out, cap);
		if (!o)
			return -1;
		c->out = o;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return 0;
}

/* Consume every complete request in the input buffer, queueing one answer each. */
static int parse(struct conn *c)
{
	for (;;) {
		if (c->skip) {
			size_t k = c->skip < c->in_len ? c->skip : c->in_len;
			memmove(c->in, c->in + k, c->in_len - k);
			c->in_len -= k;
			c->skip -= k;
			if (c->skip)
				return 0;
		}
		char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
		if (!end)
			return c->in_len == sizeof(c->in) ? -1 : 0;
		size_t hlen = (size_t)(end - c->in) + 4;
		size_t body = 0;
		for (char *p = c->in; p < end; p++) {
			if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
				body = strtoul(p + 15, NULL, 10);
				break;
			}
		}
		if (queue(c, resp, resp_len))
			return -1;
		memmove(c->in, c->in + hlen, c->in_len - hlen);
		c->in_len -= hlen;
		c->skip = body;
	}
}

static int flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (w < 0)
			return errno == EAGAIN ? 0 : -1;
		c->out_off += (size_t)w;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	resp_len = (size_t)snprintf(
	    resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    strlen(BODY), BODY);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(argc > 1 ? atoi(argv[1]) : 0)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 512) || nonblock(ls)) {
		perror("miniserver: bind/listen");
		return 1;
	}
	socklen_t al = sizeof(a);
	getsockname(ls, (struct sockaddr *)&a, &al);
	printf("listening on http://127.0.0.1:%d\n", ntohs(a.sin_port));
	fflush(stdout);

	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0 && errno != EINTR)
			return 1;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) {
				int fd;
				while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					struct conn *nc = calloc(1, sizeof(*nc));
					if (!nc) {
						close(fd);
						continue;
					}
					nc->fd = fd;
					struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				}
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
				if (r == 0 || (r < 0 && errno != EAGAIN)) {
					conn_close(ep, c);
					continue;
				}
				if (r > 0) {
					c->in_len += (size_t)r;
					if (parse(c)) {
						conn_close(ep, c);
						continue;
					}
				}
			}
			if (flush_out(c)) {
				conn_close(ep, c);
				continue;
			}
			struct epoll_event cev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
		}
	}
}
