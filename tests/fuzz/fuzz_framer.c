/*
 * fuzz_framer.c - libFuzzer target for the frame reader.  The input is a
 * byte stream from a peer; it is fed to a framer in chunks whose sizes
 * come from the input itself, and what the framer hands out is compared
 * with a plain reading of the whole stream:
 *
 *   input:  [k][stream ...]     k picks the chunk sizes (1..k+1 bytes,
 *                               cycling with the stream's own bytes)
 *
 * Whatever the cutting, the framer must give the same bodies in the same
 * order and stop with an error exactly where the reference finds a bad
 * length.  Each body also goes through proto_decode_frame.
 * Seeds: tests/fuzz/corpus/framer/ (tests/fuzz/gen_corpus.c).
 */
#include "fuzz_common.h"

/* The reference: the next frame of the whole stream at *off; 1 and the
 * body, 0 at an incomplete end, -1 on a bad length. */
static int
ref_next(const uint8_t *s, size_t n, size_t *off, const uint8_t **body,
    size_t *blen)
{
	uint32_t len;

	if (n - *off < HIVE_FRAME_HDR)
		return 0;
	len = (uint32_t)s[*off] << 24 | (uint32_t)s[*off + 1] << 16 |
	    (uint32_t)s[*off + 2] << 8 | s[*off + 3];
	if (len == 0 || len > HIVE_FRAME_MAX)
		return -1;
	if (n - *off - HIVE_FRAME_HDR < len)
		return 0;
	*body = s + *off + HIVE_FRAME_HDR;
	*blen = len;
	*off += HIVE_FRAME_HDR + len;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_framer fr;
	struct proto_err err;
	const uint8_t *stream, *rbody = NULL;
	size_t n, fed = 0, roff = 0, rlen = 0, chunk = 0;
	unsigned k;
	int ref_done = 0;

	if (size < 1)
		return 0;
	k = data[0] % 16;
	stream = data + 1;
	n = size - 1;
	proto_framer_init(&fr);
	while (fed < n && !ref_done) {
		const char *body;
		size_t blen;
		int got;

		chunk = 1 + (k == 0 ? n : (stream[fed] % (k + 1)));
		if (chunk > n - fed)
			chunk = n - fed;
		FZ_CHECK(proto_framer_feed(&fr, stream + fed, chunk) == 0);
		fed += chunk;
		/* take out every frame now complete */
		for (;;) {
			struct hive_frame f;
			int want;

			got = proto_framer_next(&fr, &body, &blen, &err);
			if (got == 0)
				break;
			want = ref_next(stream, fed, &roff, &rbody, &rlen);
			FZ_CHECK(got == want);
			if (got == -1) {
				fz_err_ok(&err);
				ref_done = 1;
				break;
			}
			FZ_CHECK(blen == rlen);
			FZ_CHECK(memcmp(body, rbody, blen) == 0);
			memset(&err, 0, sizeof(err));
			if (proto_decode_frame(body, blen, &f, &err) == 0)
				proto_frame_clear(&f);
			else
				fz_err_ok(&err);
		}
		/* what the framer holds back, the reference cannot read */
		if (!ref_done && got == 0) {
			size_t save = roff;

			FZ_CHECK(ref_next(stream, fed, &roff, &rbody,
			    &rlen) == 0);
			roff = save;
		}
	}
	proto_framer_free(&fr);
	return 0;
}
