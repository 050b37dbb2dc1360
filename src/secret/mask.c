/* See mask.h. One dense Aho-Corasick DFA (goto/fail folded into a full
 * transition table over byte classes) shared by all streams; each stream
 * keeps its DFA state, the bytes it holds back and the matched ranges whose
 * start may still move. Positions are absolute offsets in the stream. */
#include "secret/mask.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NSTREAMS 4 /* index 0 unused: stdout 1, stderr 2, system 3 */
/* Refuse automata whose table would pass this many bytes. */
#define MAX_TABLE_BYTES ((size_t)256 << 20)
#define MATCH           0x80000000u

struct mrange {
	uint64_t start, end;
};

struct mstream {
	uint32_t row;        /* DFA state * nclass (see delta) */
	uint64_t pos;        /* bytes consumed */
	uint64_t emitted;    /* bytes before this are decided and written */
	bool masked_tail;    /* the bytes just before `emitted` were written as a marker */
	struct uh_buf hold;  /* bytes [emitted, pos) */
	struct mrange *pend; /* matched, not written; sorted, disjoint, not touching */
	size_t npend, pend_head, pend_cap;
};

struct uh_masker {
	size_t npat;
	uint32_t nstates, nclass;
	uint8_t cls[256];
	/* nstates * nclass entries: the next state's row (state * nclass), with
	 * MATCH set if that state ends a pattern, so the hot loop is one load */
	uint32_t *delta;
	uint32_t *depth;  /* length of the state's string */
	uint32_t *outlen; /* longest pattern that is a suffix of it, 0 if none */
	size_t table_bytes;
	bool locked;
	size_t maxlen;
	struct mstream s[NSTREAMS];
};

/* ---- pattern derivation ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Add one pattern as "<u32 len><bytes>" to `pats`. */
static int add_pat(struct uh_buf *pats, const char *p, size_t len)
{
	if (len < UH_MASK_MIN_LEN)
		return 0;
	if (len > UINT32_MAX)
		return UH_E_INVALID_CONFIG;
	uint32_t l = (uint32_t)len;
	int r = uh_buf_append(pats, &l, sizeof(l));
	return r ? r : uh_buf_append(pats, p, len);
}

/* Base64 of k filler bytes + v, keeping the characters made only of v's bits. */
static int add_b64(struct uh_buf *pats, struct uh_buf *tmp, const unsigned char *v, size_t n, unsigned k)
{
	uh_buf_reset(tmp);
	uint64_t bits = (uint64_t)8 * (k + n);
	size_t first = (8 * k + 5) / 6, end = (size_t)(bits / 6);
	for (size_t j = first; j < end; j++) {
		size_t bit = 6 * j; /* bit offset in filler+value */
		unsigned acc = 0;
		for (unsigned t = 0; t < 6; t++) {
			size_t b = bit + t, byte = b / 8;
			unsigned char c = byte < k ? 0 : v[byte - k];
			acc = (acc << 1) | ((c >> (7 - b % 8)) & 1u);
		}
		int r = uh_buf_append(tmp, &b64chars[acc], 1);
		if (r)
			return r;
	}
	return add_pat(pats, tmp->data, tmp->len);
}

static int add_url(struct uh_buf *pats, struct uh_buf *tmp, const unsigned char *v, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	uh_buf_reset(tmp);
	bool differs = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = v[i];
		int r;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~') {
			r = uh_buf_append(tmp, &c, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			r = uh_buf_append(tmp, e, 3);
			differs = true;
		}
		if (r)
			return r;
	}
	return differs ? add_pat(pats, tmp->data, tmp->len) : 0;
}

/* JSON string body as jansson writes it; `lower` for \u00xx in lower case. */
static int add_json(struct uh_buf *pats, struct uh_buf *tmp, const unsigned char *v, size_t n, bool lower, bool *has_u)
{
	const char *hex = lower ? "0123456789abcdef" : "0123456789ABCDEF";
	uh_buf_reset(tmp);
	bool differs = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = v[i];
		char e[6];
		size_t el = 2;
		e[0] = '\\';
		switch (c) {
		case '"':
			e[1] = '"';
			break;
		case '\\':
			e[1] = '\\';
			break;
		case '\b':
			e[1] = 'b';
			break;
		case '\f':
			e[1] = 'f';
			break;
		case '\n':
			e[1] = 'n';
			break;
		case '\r':
			e[1] = 'r';
			break;
		case '\t':
			e[1] = 't';
			break;
		default:
			if (c < 0x20) {
				memcpy(e + 1, "u00", 3);
				e[4] = hex[c >> 4];
				e[5] = hex[c & 15];
				el = 6;
				*has_u = true;
			} else {
				e[0] = (char)c;
				el = 1;
			}
		}
		differs |= el > 1;
		int r = uh_buf_append(tmp, e, el);
		if (r)
			return r;
	}
	return differs ? add_pat(pats, tmp->data, tmp->len) : 0;
}

static int add_lines(struct uh_buf *pats, const char *v, size_t n)
{
	if (!memchr(v, '\n', n))
		return 0;
	size_t i = 0;
	while (i < n) {
		const char *nl = memchr(v + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - v) : n, l = e - i;
		if (l && v[i + l - 1] == '\r')
			l--;
		int r = add_pat(pats, v + i, l);
		if (r)
			return r;
		i = e + 1;
	}
	return 0;
}

static int derive(struct uh_buf *pats, const struct uh_mask_value *val)
{
	struct uh_buf tmp;
	uh_buf_init(&tmp, 0);
	tmp.secret = true;
	const unsigned char *u = (const unsigned char *)val->data;
	bool has_u = false;
	int r = add_pat(pats, val->data, val->len);
	for (unsigned k = 0; !r && k < 3; k++)
		r = add_b64(pats, &tmp, u, val->len, k);
	if (!r)
		r = add_url(pats, &tmp, u, val->len);
	if (!r)
		r = add_json(pats, &tmp, u, val->len, false, &has_u);
	if (!r && has_u)
		r = add_json(pats, &tmp, u, val->len, true, &has_u);
	if (!r)
		r = add_lines(pats, val->data, val->len);
	uh_buf_free(&tmp);
	return r;
}

/* ---- automaton ---- */

static int build(struct uh_masker *m, const struct uh_buf *pats, struct uh_error *err)
{
	size_t total = 0;
	bool used[256] = {false};
	for (size_t at = 0; at < pats->len;) {
		uint32_t l;
		memcpy(&l, pats->data + at, sizeof(l));
		at += sizeof(l);
		for (uint32_t i = 0; i < l; i++)
			used[(unsigned char)pats->data[at + i]] = true;
		total += l;
		if (l > m->maxlen)
			m->maxlen = l;
		at += l;
	}
	m->nclass = 1; /* class 0: bytes in no pattern */
	for (int b = 0; b < 256; b++)
		m->cls[b] = used[b] ? (uint8_t)m->nclass++ : 0;
	size_t maxstates = total + 1, K = m->nclass;
	if (maxstates > MAX_TABLE_BYTES / sizeof(uint32_t) / K)
		return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets", "secret values too large to mask");
	m->table_bytes = maxstates * K * sizeof(uint32_t);
	m->delta = malloc(m->table_bytes);
	m->depth = calloc(maxstates, sizeof(uint32_t));
	m->outlen = calloc(maxstates, sizeof(uint32_t));
	uint32_t *fail = calloc(maxstates, sizeof(uint32_t));
	uint32_t *queue = malloc(maxstates * sizeof(uint32_t));
	int r = 0;
	if (!m->delta || !m->depth || !m->outlen || !fail || !queue) {
		r = uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory building the masker");
		goto free_tmp;
	}
	m->locked = mlock(m->delta, m->table_bytes) == 0;
	const uint32_t NONE = UINT32_MAX;
	for (size_t i = 0; i < maxstates * K; i++)
		m->delta[i] = NONE;
	uint32_t ns = 1;
	/* trie */
	for (size_t at = 0; at < pats->len;) {
		uint32_t l, s = 0;
		memcpy(&l, pats->data + at, sizeof(l));
		at += sizeof(l);
		for (uint32_t i = 0; i < l; i++) {
			uint32_t *t = &m->delta[(size_t)s * K + m->cls[(unsigned char)pats->data[at + i]]];
			if (*t == NONE) {
				m->depth[ns] = m->depth[s] + 1;
				*t = ns++;
			}
			s = *t;
		}
		m->outlen[s] = l;
		at += l;
	}
	m->nstates = ns;
	/* fail links by BFS, folding them into the table */
	size_t qh = 0, qt = 0;
	for (size_t c = 0; c < K; c++) {
		uint32_t *t = &m->delta[c];
		if (*t == NONE || c == 0) {
			*t = 0;
		} else {
			fail[*t] = 0;
			queue[qt++] = *t;
		}
	}
	while (qh < qt) {
		uint32_t s = queue[qh++];
		if (m->outlen[fail[s]] > m->outlen[s])
			m->outlen[s] = m->outlen[fail[s]];
		for (size_t c = 0; c < K; c++) {
			uint32_t *t = &m->delta[(size_t)s * K + c];
			uint32_t fs = m->delta[(size_t)fail[s] * K + c];
			if (*t == NONE) {
				*t = fs;
			} else {
				fail[*t] = fs;
				queue[qt++] = *t;
			}
		}
	}
	for (size_t i = 0; i < (size_t)ns * K; i++) {
		uint32_t t = m->delta[i];
		m->delta[i] = (uint32_t)(t * K) | (m->outlen[t] ? MATCH : 0);
	}
free_tmp:
	if (fail)
		uh_memzero(fail, maxstates * sizeof(uint32_t));
	if (queue)
		uh_memzero(queue, maxstates * sizeof(uint32_t));
	free(fail);
	free(queue);
	return r;
}

int uh_masker_new(const struct uh_mask_value *values, size_t n, struct uh_masker **out, struct uh_error *err)
{
	*out = NULL;
	for (size_t i = 0; i < n; i++)
		if (values[i].len < UH_MASK_MIN_LEN || !values[i].data)
			return uh_error_set(err, UH_E_INVALID_CONFIG, "secrets",
			                    "secret value %zu shorter than %d bytes", i, UH_MASK_MIN_LEN);
	struct uh_masker *m = calloc(1, sizeof(*m));
	if (!m)
		return uh_error_set(err, UH_E_INTERNAL, NULL, "out of memory building the masker");
	for (int i = 0; i < NSTREAMS; i++) {
		uh_buf_init(&m->s[i].hold, 0);
		m->s[i].hold.secret = true;
	}
	m->npat = n;
	if (n == 0) {
		*out = m;
		return 0;
	}
	struct uh_buf pats;
	uh_buf_init(&pats, 0);
	pats.secret = true;
	int r = 0;
	for (size_t i = 0; !r && i < n; i++)
		r = derive(&pats, &values[i]);
	if (r)
		uh_error_set(err, r, "secrets", "deriving secret patterns failed");
	else
		r = build(m, &pats, err);
	uh_buf_free(&pats);
	if (r) {
		uh_masker_free(m);
		return r;
	}
	*out = m;
	return 0;
}

void uh_masker_free(struct uh_masker *m)
{
	if (!m)
		return;
	if (m->delta) {
		uh_memzero(m->delta, m->table_bytes);
		if (m->locked)
			munlock(m->delta, m->table_bytes);
	}
	size_t ns = m->nstates;
	if (m->depth)
		uh_memzero(m->depth, ns * sizeof(uint32_t));
	if (m->outlen)
		uh_memzero(m->outlen, ns * sizeof(uint32_t));
	free(m->delta);
	free(m->depth);
	free(m->outlen);
	for (int i = 0; i < NSTREAMS; i++) {
		uh_buf_free(&m->s[i].hold);
		free(m->s[i].pend);
	}
	uh_memzero(m, sizeof(*m));
	free(m);
}

/* ---- streaming ---- */

/* The bytes of a feed: the held bytes [h0, base) then `data` from `base`. */
struct view {
	const char *hold, *data;
	uint64_t h0, base;
};

static int emit_raw(const struct view *v, uint64_t a, uint64_t b, struct uh_buf *out)
{
	int r = 0;
	if (a < b && a < v->base) {
		uint64_t e = b < v->base ? b : v->base;
		r = uh_buf_append(out, v->hold + (a - v->h0), (size_t)(e - a));
		a = e;
	}
	if (!r && a < b)
		r = uh_buf_append(out, v->data + (a - v->base), (size_t)(b - a));
	return r;
}

/* Write pending ranges whose start can no longer move (start <= safe). */
static int settle(struct mstream *s, const struct view *v, uint64_t safe, bool all, struct uh_buf *out)
{
	while (s->npend && (all || s->pend[s->pend_head].start <= safe)) {
		struct mrange g = s->pend[s->pend_head];
		int r = emit_raw(v, s->emitted, g.start, out);
		if (!r)
			r = uh_buf_append(out, UH_MASK_MARKER, sizeof(UH_MASK_MARKER) - 1);
		if (r)
			return r;
		s->emitted = g.end;
		s->masked_tail = true;
		s->pend_head++;
		s->npend--;
	}
	if (!s->npend)
		s->pend_head = 0;
	return 0;
}

static int on_match(struct mstream *s, uint64_t start, uint64_t end)
{
	if (s->masked_tail && start <= s->emitted) {
		/* extends the marker already written, swallowing anything pending */
		s->emitted = end;
		s->npend = s->pend_head = 0;
		return 0;
	}
	while (s->npend && s->pend[s->pend_head + s->npend - 1].end >= start) {
		struct mrange *g = &s->pend[s->pend_head + s->npend - 1];
		if (g->start < start)
			start = g->start;
		s->npend--;
	}
	if (s->pend_head + s->npend == s->pend_cap) {
		if (s->pend_head) {
			memmove(s->pend, s->pend + s->pend_head, s->npend * sizeof(*s->pend));
			s->pend_head = 0;
		} else {
			size_t cap = s->pend_cap ? 2 * s->pend_cap : 8;
			struct mrange *p = realloc(s->pend, cap * sizeof(*p));
			if (!p)
				return UH_E_INTERNAL;
			s->pend = p;
			s->pend_cap = cap;
		}
	}
	s->pend[s->pend_head + s->npend++] = (struct mrange){start, end};
	return 0;
}

static struct mstream *stream_of(struct uh_masker *m, int stream)
{
	if (!m || stream < 1 || stream >= NSTREAMS)
		return NULL;
	return &m->s[stream];
}

/* Keep bytes [emitted, pos) in the hold buffer. */
static int keep_tail(struct mstream *s, const struct view *v)
{
	struct uh_buf *h = &s->hold;
	size_t old_len = h->len;
	if (s->emitted < v->base) {
		size_t off = (size_t)(s->emitted - v->h0), keep = h->len - off;
		memmove(h->data, h->data + off, keep);
		h->len = keep;
		uh_memzero(h->data + keep, old_len - keep);
		return emit_raw(v, v->base, s->pos, h);
	}
	uh_buf_reset(h);
	if (h->data)
		uh_memzero(h->data, old_len);
	return emit_raw(v, s->emitted, s->pos, h);
}

int uh_masker_feed(struct uh_masker *m, int stream, const char *data, size_t len, struct uh_buf *out)
{
	struct mstream *s = stream_of(m, stream);
	if (!s)
		return UH_E_INTERNAL;
	if (m->npat == 0)
		return len ? uh_buf_append(out, data, len) : 0;
	struct view v = {s->hold.data, data, s->emitted, s->pos};
	const uint32_t *delta = m->delta, *outlen = m->outlen, *depth = m->depth;
	const uint8_t *cls = m->cls;
	const size_t K = m->nclass;
	uint32_t row = s->row;
	int r = 0;
	for (size_t i = 0; i < len; i++) {
		uint32_t x = delta[row + cls[(unsigned char)data[i]]];
		row = x & ~MATCH;
		if (!(x & MATCH))
			continue;
		/* Pending ranges are settled lazily, here and at the end of the
		 * feed: until then their bytes are still in `data` or held. */
		uint32_t st = (uint32_t)(row / K);
		uint64_t end = v.base + i + 1;
		if ((r = settle(s, &v, end - depth[st], false, out)) || (r = on_match(s, end - outlen[st], end)))
			break;
	}
	s->row = row;
	s->pos = v.base + len;
	if (r)
		return r;
	uint64_t safe = s->pos - depth[row / K];
	if ((r = settle(s, &v, safe, false, out)))
		return r;
	/* every range still pending starts after `safe` */
	uint64_t limit = safe;
	if (limit > s->emitted) {
		r = emit_raw(&v, s->emitted, limit, out);
		if (r)
			return r;
		s->emitted = limit;
		s->masked_tail = false;
	}
	return keep_tail(s, &v);
}

int uh_masker_flush(struct uh_masker *m, int stream, struct uh_buf *out)
{
	struct mstream *s = stream_of(m, stream);
	if (!s)
		return UH_E_INTERNAL;
	struct view v = {s->hold.data, NULL, s->emitted, s->pos};
	int r = settle(s, &v, 0, true, out);
	if (!r)
		r = emit_raw(&v, s->emitted, s->pos, out);
	size_t hl = s->hold.len;
	uh_buf_reset(&s->hold);
	if (s->hold.data)
		uh_memzero(s->hold.data, hl);
	s->row = 0;
	s->pos = s->emitted = 0;
	s->masked_tail = false;
	s->npend = s->pend_head = 0;
	return r;
}
