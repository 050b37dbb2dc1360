/* The demultiplexer of Docker's attach stream (see docker_impl.h). Pure: no
 * I/O, no allocation; the fuzz target tests/fuzz/fuzz_docker_stream.c
 * drives it with arbitrary bytes cut at arbitrary points. */
#include <string.h>

#include "backend/docker_impl.h"

int dk_demux_feed(struct dk_demux *d, const char *data, size_t len, dk_frame_fn fn, void *arg)
{
	if (d->broken)
		return -1;
	while (len > 0) {
		if (d->left > 0) {
			size_t n = len < d->left ? len : d->left;
			fn(arg, d->stream, data, n);
			d->left -= (uint32_t)n;
			data += n;
			len -= n;
			continue;
		}
		size_t n = sizeof(d->hdr) - d->hlen;
		if (n > len)
			n = len;
		memcpy(d->hdr + d->hlen, data, n);
		d->hlen += n;
		data += n;
		len -= n;
		if (d->hlen < sizeof(d->hdr))
			break;
		d->hlen = 0;
		const unsigned char *h = d->hdr;
		if (h[0] > 2 || h[1] || h[2] || h[3]) {
			d->broken = true;
			return -1;
		}
		d->stream = h[0] == 2 ? 2 : 1; /* stdin echoes (0) go with stdout */
		d->left = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
	}
	return 0;
}

bool dk_demux_clean_end(const struct dk_demux *d)
{
	return !d->broken && d->hlen == 0 && d->left == 0;
}
