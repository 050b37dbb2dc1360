/* The webhook backend's SSRF guard: which addresses a request may go to,
 * IP literals parsed the lenient way resolvers do (so "0x7f.1" cannot
 * sneak past a strict parser that calls it a name), host globs and https
 * URL parsing. Pure apart from uh_webhook_resolve_check (getaddrinfo). */
#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/webhook.h"

static enum uh_wh_addr_class v4_class(uint32_t a) /* host byte order */
{
	if (a == 0xA9FEA9FEu) /* 169.254.169.254 */
		return UH_WH_ADDR_METADATA;
	static const struct {
		uint32_t net, mask;
	} priv[] = {
	    {0x00000000u, 0xFF000000u}, /* 0/8 this network, 0.0.0.0 */
	    {0x0A000000u, 0xFF000000u}, /* 10/8 */
	    {0x64400000u, 0xFFC00000u}, /* 100.64/10 CGNAT */
	    {0x7F000000u, 0xFF000000u}, /* 127/8 */
	    {0xA9FE0000u, 0xFFFF0000u}, /* 169.254/16 link-local */
	    {0xAC100000u, 0xFFF00000u}, /* 172.16/12 */
	    {0xC0000000u, 0xFFFFFF00u}, /* 192.0.0/24 IETF protocol assignments */
	    {0xC0000200u, 0xFFFFFF00u}, /* 192.0.2/24 TEST-NET-1 */
	    {0xC0586300u, 0xFFFFFF00u}, /* 192.88.99/24 6to4 relay */
	    {0xC0A80000u, 0xFFFF0000u}, /* 192.168/16 */
	    {0xC6120000u, 0xFFFE0000u}, /* 198.18/15 benchmarking */
	    {0xC6336400u, 0xFFFFFF00u}, /* 198.51.100/24 TEST-NET-2 */
	    {0xCB007100u, 0xFFFFFF00u}, /* 203.0.113/24 TEST-NET-3 */
	    {0xE0000000u, 0xF0000000u}, /* 224/4 multicast */
	    {0xF0000000u, 0xF0000000u}, /* 240/4 reserved, broadcast */
	};
	for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++)
		if ((a & priv[i].mask) == priv[i].net)
			return UH_WH_ADDR_PRIVATE;
	return UH_WH_ADDR_PUBLIC;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static enum uh_wh_addr_class v6_class(const unsigned char *b)
{
	static const unsigned char metadata[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
	static const unsigned char zero10[10] = {0};
	if (memcmp(b, metadata, 16) == 0)
		return UH_WH_ADDR_METADATA;
	/* ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, includes :: and ::1) */
	if (memcmp(b, zero10, 10) == 0 && ((b[10] == 0xff && b[11] == 0xff) || (b[10] == 0 && b[11] == 0))) {
		uint32_t v4 = be32(b + 12);
		if (b[10] == 0 && v4 <= 1)
			return UH_WH_ADDR_PRIVATE; /* :: and ::1 */
		return v4_class(v4);
	}
	/* ::ffff:0:a.b.c.d (SIIT translated) */
	if (memcmp(b, zero10 + 2, 8) == 0 && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0)
		return v4_class(be32(b + 12));
	/* 64:ff9b::/96 NAT64 well-known prefix */
	static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
	if (memcmp(b, nat64, 12) == 0)
		return v4_class(be32(b + 12));
	/* 64:ff9b:1::/48 local-use NAT64 */
	if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0x00 && b[5] == 0x01)
		return UH_WH_ADDR_PRIVATE;
	/* 2002::/16 6to4: the IPv4 address in bytes 2..5 */
	if (b[0] == 0x20 && b[1] == 0x02) {
		enum uh_wh_addr_class c = v4_class(be32(b + 2));
		return c == UH_WH_ADDR_PUBLIC ? UH_WH_ADDR_PUBLIC : c;
	}
	/* 2001::/32 Teredo embeds an obfuscated address: refuse. 2001:db8::/32 documentation. */
	if (b[0] == 0x20 && b[1] == 0x01 && ((b[2] == 0 && b[3] == 0) || (b[2] == 0x0d && b[3] == 0xb8)))
		return UH_WH_ADDR_PRIVATE;
	if ((b[0] & 0xfe) == 0xfc) /* fc00::/7 ULA */
		return UH_WH_ADDR_PRIVATE;
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 link-local */
		return UH_WH_ADDR_PRIVATE;
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) /* fec0::/10 site-local (deprecated) */
		return UH_WH_ADDR_PRIVATE;
	if (b[0] == 0xff) /* multicast */
		return UH_WH_ADDR_PRIVATE;
	if (b[0] == 0x01 && b[1] == 0x00 && memcmp(b + 2, zero10, 6) == 0) /* 100::/64 discard */
		return UH_WH_ADDR_PRIVATE;
	if ((b[0] & 0xe0) != 0x20) /* outside 2000::/3 global unicast */
		return UH_WH_ADDR_PRIVATE;
	return UH_WH_ADDR_PUBLIC;
}

enum uh_wh_addr_class uh_webhook_addr_class(const struct sockaddr *sa)
{
	if (!sa)
		return UH_WH_ADDR_PRIVATE;
	if (sa->sa_family == AF_INET)
		return v4_class(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
		return v6_class(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
	return UH_WH_ADDR_PRIVATE;
}

bool uh_webhook_addr_allowed(const struct sockaddr *sa, bool allow_private)
{
	enum uh_wh_addr_class c = uh_webhook_addr_class(sa);
	return c == UH_WH_ADDR_PUBLIC || (c == UH_WH_ADDR_PRIVATE && allow_private);
}

int uh_webhook_parse_ip(const char *host, struct sockaddr_storage *ss)
{
	char buf[256];
	size_t n = host ? strlen(host) : 0;
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[') {
		if (host[n - 1] != ']')
			return -1;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
	} else {
		memcpy(buf, host, n + 1);
	}
	char *pct = strchr(buf, '%'); /* zone id: the address is link-local anyway */
	if (pct)
		*pct = '\0';
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (strchr(buf, ':')) {
		if (inet_pton(AF_INET6, buf, &s6->sin6_addr) != 1)
			return -1;
		s6->sin6_family = AF_INET6;
		return 0;
	}
	if (host[0] == '[')
		return -1;
	/* inet_aton takes the classic forms (127.1, 0x7f.1, 2130706433, octal)
	 * and would stop at a space: refuse anything but [0-9a-fA-Fx.]. */
	for (const char *p = buf; *p; p++)
		if (!isxdigit((unsigned char)*p) && *p != '.' && *p != 'x' && *p != 'X')
			return -1;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	if (inet_aton(buf, &s4->sin_addr) == 0) {
		/* All hex digits and dots but not an address ("deadbeef.com" has
		 * letters past f, so only names like "cafe.bad" get here): a name. */
		return -1;
	}
	s4->sin_family = AF_INET;
	return 0;
}

bool uh_webhook_host_allowed(const struct uh_config *cfg, const char *host)
{
	char h[256];
	size_t n = strlen(host);
	if (n == 0 || n >= sizeof(h))
		return false;
	memcpy(h, host, n + 1);
	if (h[n - 1] == '.')
		h[n - 1] = '\0';
	for (size_t i = 0; i < cfg->webhook.allowed_hosts.n; i++)
		if (fnmatch(cfg->webhook.allowed_hosts.v[i], h, FNM_CASEFOLD) == 0)
			return true;
	return false;
}

int uh_webhook_resolve_check(const char *host, bool allow_private, struct sockaddr_storage *out, struct uh_error *err)
{
	if (uh_webhook_parse_ip(host, out) == 0) {
		if (!uh_webhook_addr_allowed((struct sockaddr *)out, allow_private))
			return uh_error_set(err, UH_E_FORBIDDEN, NULL, "address of '%s' is not allowed", host);
		return 0;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
		return uh_error_set(err, UH_E_UNAVAILABLE, NULL, "cannot resolve '%s'", host);
	int rc = 0;
	for (struct addrinfo *p = ai; p; p = p->ai_next)
		if (!uh_webhook_addr_allowed(p->ai_addr, allow_private)) {
			rc = uh_error_set(err, UH_E_FORBIDDEN, NULL, "'%s' resolves to an address that is not allowed",
			                  host);
			break;
		}
	if (!rc) {
		memset(out, 0, sizeof(*out));
		memcpy(out, ai->ai_addr, ai->ai_addrlen);
	}
	freeaddrinfo(ai);
	return rc;
}

int uh_webhook_url_parse(const char *url, struct uh_wh_url *out)
{
	memset(out, 0, sizeof(*out));
	if (!url || strncasecmp(url, "https://", 8) != 0)
		return -1;
	const char *a = url + 8;
	size_t alen = strcspn(a, "/?#");
	const char *rest = a + alen;
	if (alen == 0 || memchr(a, '@', alen) || memchr(a, '\\', alen) || strchr(rest, '#'))
		return -1;
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '\\')
			return -1;
	const char *port = NULL;
	size_t hlen;
	if (a[0] == '[') {
		const char *close = memchr(a, ']', alen);
		if (!close)
			return -1;
		hlen = (size_t)(close - a) - 1;
		if (hlen == 0 || hlen >= sizeof(out->host))
			return -1;
		memcpy(out->host, a + 1, hlen);
		if (close + 1 < a + alen) {
			if (close[1] != ':')
				return -1;
			port = close + 2;
		}
		struct in6_addr tmp;
		char z[256];
		snprintf(z, sizeof(z), "%s", out->host);
		if (strchr(z, '%'))
			*strchr(z, '%') = '\0';
		if (inet_pton(AF_INET6, z, &tmp) != 1)
			return -1;
	} else {
		const char *colon = memchr(a, ':', alen);
		hlen = colon ? (size_t)(colon - a) : alen;
		if (hlen == 0 || hlen >= sizeof(out->host))
			return -1;
		memcpy(out->host, a, hlen);
		for (size_t i = 0; i < hlen; i++) {
			unsigned char c = (unsigned char)out->host[i];
			if (!isalnum(c) && c != '.' && c != '-' && c != '_')
				return -1;
		}
		if (colon)
			port = colon + 1;
	}
	out->port = 443;
	if (port) {
		const char *pe = a + alen;
		if (port == pe || pe - port > 5)
			return -1;
		int v = 0;
		for (const char *p = port; p < pe; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			v = v * 10 + (*p - '0');
		}
		if (v < 1 || v > 65535)
			return -1;
		out->port = v;
	}
	if (strlen(rest) >= sizeof(out->rest) - 1)
		return -1;
	snprintf(out->rest, sizeof(out->rest), "%s%s", rest[0] == '/' ? "" : "/", rest);
	return 0;
}
