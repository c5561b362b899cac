/* The batch loop of ESP with AES-GCM (RFC 4106, 16-byte ICV) over OpenSSL's libcrypto.
 *
 * larval's Python path (larval/esp/sa.py, transforms.py) is the reference; this file does
 * the same per packet for a whole batch in one call, so that the work around each AES call
 * is C rather than Python. Every drop is reported per packet, for Python to count by name.
 * An SA's C block (struct larval_gcm_sa below) keeps what only the packet path writes:
 * the outbound sequence numbers and counters, which the sealing calls number and count,
 * and the inbound anti-replay window and counters, which the receiving calls check and
 * move as larval/esp/replay.py's class would. Python reads and writes both in place.
 * Python may also give an inbound SA's block the IPv4 box of the inbound policy check
 * (larval_gcm_sa_box), against which the receive of many SAs flags what it opens.
 *
 * ESP packet (RFC 4303 §2):  SPI | Seq (low 32) | IV (8) | ciphertext | ICV (16)
 * nonce = salt (4) || IV (8)                                       (RFC 4106 §4)
 * AAD = SPI || Seq, or SPI || Seqh || Seql with ESN               (RFC 4106 §5)
 * IV = the 64-bit sequence number, as larval's Python path writes it (RFC 4106 §3.1)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* What `larval_gcm_open_window` found of each packet (and the further codes below). */
#define LARVAL_OPEN_OK 0
#define LARVAL_OPEN_AUTH 1
#define LARVAL_OPEN_PADDING 2
/* `struct larval_gcm_sa`'s box_shift where it keeps no box. */
#define LARVAL_NO_BOX 0xFF
/* RFC 4303 §2.6: the Next Header of a dummy packet. */
#define LARVAL_NH_NONE 59
/* Where a packet's count reached its SA's life_notice: out_len's top bit of a sealed one
 * (`larval_gcm_seal_many`), and the flag beside boxed's 1 for an opened one. */
#define LARVAL_NOTICED ((size_t)1 << (sizeof(size_t) * 8 - 1))
#define LARVAL_BOX_NOTICED 2

struct larval_gcm {
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
    unsigned char salt[4];
};

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

const char *larval_openssl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

void larval_gcm_free(struct larval_gcm *g)
{
    if (g == NULL)
        return;
    /* EVP_CIPHER_CTX_free cleanses the key schedule. */
    EVP_CIPHER_CTX_free(g->enc);
    EVP_CIPHER_CTX_free(g->dec);
    OPENSSL_cleanse(g->salt, sizeof g->salt);
    free(g);
}

struct larval_gcm *larval_gcm_new(const unsigned char *key, size_t key_len,
                                  const unsigned char *salt)
{
    const EVP_CIPHER *cipher;
    struct larval_gcm *g;

    if (key_len == 16)
        cipher = EVP_aes_128_gcm();
    else if (key_len == 32)
        cipher = EVP_aes_256_gcm();
    else
        return NULL;
    g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->enc = EVP_CIPHER_CTX_new();
    g->dec = EVP_CIPHER_CTX_new();
    if (g->enc == NULL || g->dec == NULL
        || EVP_EncryptInit_ex(g->enc, cipher, NULL, key, NULL) != 1
        || EVP_DecryptInit_ex(g->dec, cipher, NULL, key, NULL) != 1) {
        larval_gcm_free(g);
        return NULL;
    }
    memcpy(g->salt, salt, sizeof g->salt);
    return g;
}

/* Seal n packets numbered seq0, seq0 + 1, ... with `ctx` (keyed for encryption) and the
 * nonce's `salt` (4 bytes): inner packet i is in_len[i] bytes of `in` (back to back) with
 * Next Header nh[i]. The ESP packets go back to back into `out`
 * (out_cap bytes), their lengths into out_len. 0, or -1 if `out` is too small or OpenSSL
 * fails (nothing is then to be sent). */
static int seal_with(EVP_CIPHER_CTX *ctx, const unsigned char *salt, uint32_t spi,
                     uint64_t seq0, int esn, size_t n, const unsigned char *in,
                     const size_t *in_len, const unsigned char *nh, unsigned char *out,
                     size_t out_cap, size_t *out_len)
{
    unsigned char nonce[12], aad[12];
    size_t off = 0, i, k;
    int outl;

    memcpy(nonce, salt, 4);
    for (i = 0; i < n; i++) {
        uint64_t seq = seq0 + i;
        size_t len = in_len[i];
        /* RFC 4303 §2.4: Pad Length and Next Header end on a 4-byte boundary. */
        size_t padlen = (4 - (len + 2) % 4) % 4;
        size_t clen = len + padlen + 2;
        size_t total = 16 + clen + 16;
        unsigned char *p = out + off;
        unsigned char *c = p + 16;

        if (total > out_cap - off || clen > INT32_MAX)
            return -1;
        put32(p, spi);
        put32(p + 4, (uint32_t)seq);
        put32(p + 8, (uint32_t)(seq >> 32));
        put32(p + 12, (uint32_t)seq);
        memcpy(nonce + 4, p + 8, 8);
        memcpy(c, in, len);
        in += len;
        for (k = 0; k < padlen; k++)
            c[len + k] = (unsigned char)(k + 1); /* RFC 4303 §2.4: 1, 2, 3, ... */
        c[len + padlen] = (unsigned char)padlen;
        c[len + padlen + 1] = nh[i];
        if (esn) {
            put32(aad, spi);
            put32(aad + 4, (uint32_t)(seq >> 32));
            put32(aad + 8, (uint32_t)seq);
        } else {
            memcpy(aad, p, 8);
        }
        if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
            || EVP_EncryptUpdate(ctx, NULL, &outl, aad, esn ? 12 : 8) != 1
            || EVP_EncryptUpdate(ctx, c, &outl, c, (int)clen) != 1
            || EVP_EncryptFinal_ex(ctx, c + clen, &outl) != 1
            || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, c + clen) != 1)
            return -1;
        out_len[i] = total;
        off += total;
    }
    return 0;
}

/* `seal_with` on the SA direction's own context. */
int larval_gcm_seal(struct larval_gcm *g, uint32_t spi, uint64_t seq0, int esn, size_t n,
                    const unsigned char *in, const size_t *in_len, const unsigned char *nh,
                    unsigned char *out, size_t out_cap, size_t *out_len)
{
    return seal_with(g->enc, g->salt, spi, seq0, esn, n, in, in_len, nh, out, out_cap,
                     out_len);
}

/* Verify and decrypt with `ctx` (keyed for decryption) and the nonce's `salt` one ESP
 * packet `p` of `len` bytes (at least 34) into `out` (len - 32 bytes: payload, padding,
 * Pad Length, Next Header), its AAD's Seqh `seq_hi` when esn; its status, and for an OK
 * packet its payload length and Next Header.
 * 0, or -1 if OpenSSL fails outright. */
static int gcm_open_one(EVP_CIPHER_CTX *ctx, const unsigned char *salt, int esn,
                        const unsigned char *p, size_t len, uint32_t seq_hi,
                        unsigned char *out, unsigned char *status, uint32_t *payload_len,
                        unsigned char *nh)
{
    unsigned char nonce[12], aad[12], tag[16];
    size_t clen = len - 32, padlen, end, k;
    int outl;

    *status = LARVAL_OPEN_AUTH;
    *payload_len = 0;
    *nh = 0;
    memcpy(nonce, salt, 4);
    memcpy(nonce + 4, p + 8, 8);
    if (esn) {
        memcpy(aad, p, 4);
        put32(aad + 4, seq_hi);
        memcpy(aad + 8, p + 4, 4);
    } else {
        memcpy(aad, p, 8);
    }
    memcpy(tag, p + len - 16, 16);
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
        || EVP_DecryptUpdate(ctx, NULL, &outl, aad, esn ? 12 : 8) != 1
        || EVP_DecryptUpdate(ctx, out, &outl, p + 16, (int)clen) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
        return -1;
    if (EVP_DecryptFinal_ex(ctx, out + clen, &outl) != 1)
        return 0;
    /* RFC 4303 §2.4: Pad Length, then 1, 2, 3, ... before it. */
    padlen = out[clen - 2];
    if (padlen + 2 > clen) {
        *status = LARVAL_OPEN_PADDING;
        return 0;
    }
    end = clen - 2 - padlen;
    for (k = 0; k < padlen; k++) {
        if (out[end + k] != (unsigned char)(k + 1)) {
            *status = LARVAL_OPEN_PADDING;
            return 0;
        }
    }
    *status = LARVAL_OPEN_OK;
    *payload_len = (uint32_t)end;
    *nh = out[clen - 1];
    return 0;
}

/* The anti-replay window (larval/esp/replay.py `EspReplayWindow`, the reference) as the
 * receiving calls keep it in an SA's block: T, the highest sequence number authenticated
 * (64 bits with ESN), and a bitmap whose bit i says that T - i was received, held as
 * words of 64 bits, word k for bits 64k to 64k + 63. */

/* ... and the checks before the ICV. */
#define LARVAL_OPEN_TRUNCATED 3 /* shorter than the smallest ESP packet */
#define LARVAL_OPEN_SPI 4       /* another SA's SPI */
#define LARVAL_OPEN_REPLAY 5    /* already received */
#define LARVAL_OPEN_TOO_OLD 6   /* left of the window */
#define LARVAL_OPEN_BEFORE 7    /* ESN: before the first subspace */
#define LARVAL_OPEN_BEYOND 8    /* ESN: beyond the 64-bit space */

/* Slide the bitmap (size bits in nw words) left by d bits: T moves up by d. */
static void window_shift(uint64_t *w, size_t nw, size_t size, uint64_t d)
{
    size_t ws, i;
    unsigned int bs;

    if (d >= size) {
        memset(w, 0, nw * sizeof *w);
        return;
    }
    ws = (size_t)(d / 64);
    bs = (unsigned int)(d % 64);
    for (i = nw; i-- > 0;) {
        uint64_t v = 0;
        if (i >= ws) {
            v = w[i - ws] << bs;
            if (bs && i > ws)
                v |= w[i - ws - 1] >> (64 - bs);
        }
        w[i] = v;
    }
    if (size % 64)
        w[nw - 1] &= ((uint64_t)1 << (size % 64)) - 1;
}

/* TCP segmentation and checksum verification for the TUN offload (larval/net/offload.py,
 * whose per-packet Python is the reference): RFC 1071 sums, RFC 9293 §3.1 for the TCP
 * header and pseudo-header, RFC 791 §3.1 for the IPv4 header. Sums are kept modulo
 * 0xFFFF, where 0x10000 ≡ 1 (RFC 1071 §2(B)). */

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static void put16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* The sum of `len` bytes read as big-endian 16-bit words, an odd last byte padded with
 * zero; not reduced. Up to 2^48 bytes sum within 64 bits. */
static uint64_t sum16(const unsigned char *p, size_t len)
{
    uint64_t s = 0;
    size_t i;

    for (i = 0; i + 8 <= len; i += 8)
        s += ((uint32_t)p[i] << 8 | p[i + 1]) + ((uint32_t)p[i + 2] << 8 | p[i + 3])
             + ((uint32_t)p[i + 4] << 8 | p[i + 5]) + ((uint32_t)p[i + 6] << 8 | p[i + 7]);
    for (; i + 2 <= len; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (i < len)
        s += (uint32_t)p[i] << 8;
    return s;
}

/* The checksum field for data whose sum is `s`: 0 for a sum ≡ 0, as Linux's csum_fold. */
static uint32_t fold(uint64_t s)
{
    return (uint32_t)((0xFFFF - s % 0xFFFF) % 0xFFFF);
}

/* Complete in place the checksum of a packet of `len` bytes the kernel left partial
 * (VIRTIO_NET_HDR_F_NEEDS_CSUM), as larval/net/offload.py's finish_checksum does: the
 * field at csum_start + csum_offset holds the pseudo-header sum, and the checksum is the
 * complement of the sum from csum_start to the end, 0 sent as 0xFFFF. 0, or -1 with
 * nothing written if the field lies outside the packet. */
int larval_finish_checksum(unsigned char *p, size_t len, size_t csum_start,
                           size_t csum_offset)
{
    size_t field = csum_start + csum_offset;
    uint32_t c;

    if (csum_start >= len || csum_offset > len || field + 2 > len)
        return -1;
    c = fold(sum16(p + csum_start, len - csum_start));
    put16(p + field, c ? c : 0xFFFF);
    return 0;
}

/* Split a TCP super-packet into `count` segments of at most `size` payload bytes, back
 * to back in `out` (out_cap bytes), their lengths in out_len. `header` is the super-
 * packet's IP and TCP headers (hlen bytes, TCP at `tcp`) with the TCP checksum zeroed;
 * `payload` its payload_len bytes. base_sum is the sum of what every segment shares (see
 * tcp_segment). Per segment i: IPv4 Total Length, ID + i and header checksum (or IPv6
 * Payload Length), sequence number + i·size, FIN and PSH on the last only, CWR on the
 * first only, the full TCP checksum. 0, or -1 if `out` is too small. */
int larval_tcp_segment(const unsigned char *header, size_t hlen, size_t tcp, int version,
                       const unsigned char *payload, size_t payload_len, size_t size,
                       size_t count, uint32_t seq0, unsigned int flags0, uint32_t ip_id0,
                       uint32_t base_sum, unsigned char *out, size_t out_cap, size_t *out_len)
{
    size_t tcp_hdr_len = hlen - tcp, off = 0, i;

    if (size == 0 || tcp + 20 > hlen)
        return -1;
    for (i = 0; i < count; i++) {
        size_t start = i * size;
        size_t chunk = start < payload_len ? payload_len - start : 0;
        unsigned char *seg = out + off;
        uint32_t seq = (uint32_t)(seq0 + (uint64_t)i * size);
        unsigned int flags = flags0;
        uint64_t total;

        if (chunk > size)
            chunk = size;
        if (hlen + chunk > out_cap - off)
            return -1;
        memcpy(seg, header, hlen);
        if (version == 4) {
            put16(seg + 2, (uint32_t)(hlen + chunk));
            put16(seg + 4, (ip_id0 + (uint32_t)i) & 0xFFFF);
            seg[10] = seg[11] = 0;
            put16(seg + 10, fold(sum16(seg, tcp)));
        } else {
            put16(seg + 4, (uint32_t)(tcp_hdr_len + chunk));
        }
        put32(seg + tcp + 4, seq);
        if (i != count - 1)
            flags &= ~(unsigned int)(TCP_FIN | TCP_PSH);
        if (i)
            flags &= ~(unsigned int)TCP_CWR;
        seg[tcp + 13] = (unsigned char)flags;
        memcpy(seg + hlen, payload + start, chunk);
        total = (uint64_t)base_sum + (seq >> 16) + (seq & 0xFFFF) + flags + tcp_hdr_len + chunk
                + sum16(seg + hlen, chunk);
        put16(seg + tcp + 16, fold(total));
        out_len[i] = hlen + chunk;
        off += hlen + chunk;
    }
    return 0;
}

/* Whether each of n TCP packets (back to back in `in`, packet i in_len[i] bytes with its
 * TCP header at tcp[i], IPv4 or IPv6 by its first byte) has a verifying IPv4 header
 * checksum (IPv4) and TCP checksum: ok[i] = 1 or 0. */
static void larval_tcp_checksums_ok(size_t n, const unsigned char *in, const size_t *in_len,
                                    const size_t *tcp, unsigned char *ok)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const unsigned char *p = in;
        size_t len = in_len[i], t = tcp[i];
        uint64_t total;

        in += len;
        ok[i] = 0;
        if (len < 20 || t > len)
            continue;
        if (p[0] >> 4 == 4) {
            if (t < 20 || sum16(p, t) % 0xFFFF != 0)
                continue;
            total = sum16(p + 12, 8);
        } else {
            if (len < 40 || t < 40)
                continue;
            total = sum16(p + 8, 32);
        }
        total += 6 + (len - t) + sum16(p + t, len - t);
        ok[i] = total % 0xFFFF == 0;
    }
}

/* Coalescing (net/offload.py `coalesce`, the reference): consecutive TCP segments of one
 * flow merged into one GSO_TCPV4 / GSO_TCPV6 write with a virtio_net_hdr. */

#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define TCP_URG 0x20
#define TCP_NO_COALESCE (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG)
#define IPV4_DF 0x4000
#define IPV4_MF_OFFSET 0x3FFF
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_HDR_LEN 10

/* What merging needs of a TCP data segment (offload.py `_candidate`). */
struct co_cand {
    size_t tcp, hlen;
    uint32_t seq;
    unsigned int flags;
    long ip_id; /* -1: DF set, the ID is free */
};

static int co_candidate(const unsigned char *p, size_t n, struct co_cand *c)
{
    unsigned int b0, offset;
    uint32_t frag;

    if (n < 40)
        return 0;
    b0 = p[0];
    if (b0 >> 4 == 4) {
        c->tcp = (size_t)(b0 & 0x0F) * 4;
        if (c->tcp < 20 || c->tcp + 20 > n)
            return 0;
        frag = get16(p + 6);
        if (get16(p + 2) != n || p[9] != 6 || frag & IPV4_MF_OFFSET)
            return 0;
        c->ip_id = frag & IPV4_DF ? -1 : (long)get16(p + 4);
    } else if (b0 >> 4 == 6) {
        if (n < 60 || get16(p + 4) + 40 != n || p[6] != 6)
            return 0;
        c->tcp = 40;
        c->ip_id = -1;
    } else {
        return 0;
    }
    offset = p[c->tcp + 12];
    c->flags = p[c->tcp + 13];
    c->hlen = c->tcp + (size_t)(offset >> 4) * 4;
    c->seq = get32(p + c->tcp + 4);
    if (offset < 0x50 || c->hlen >= n || c->flags & TCP_NO_COALESCE || !(c->flags & TCP_ACK))
        return 0;
    return 1;
}

/* Whether a and b are of one flow: addresses and ports. */
static int co_same_flow(const unsigned char *a, size_t a_tcp, const unsigned char *b,
                        size_t b_tcp)
{
    if (a[0] >> 4 != b[0] >> 4)
        return 0;
    if (a[0] >> 4 == 4)
        return memcmp(a + 12, b + 12, 8) == 0 && memcmp(a + a_tcp, b + b_tcp, 4) == 0;
    return memcmp(a + 8, b + 8, 36) == 0;
}

/* Whether the headers (hlen bytes) are equal but for what may differ between segments of
 * one write (offload.py `_shape_mask`): IPv4 Total Length, ID and header checksum, IPv6
 * Payload Length, the TCP sequence number, PSH and the TCP checksum. */
static int co_same_shape(const unsigned char *a, const unsigned char *b, size_t tcp,
                         size_t hlen)
{
    size_t i;

    for (i = 0; i < hlen; i++) {
        unsigned int mask = 0xFF;

        if (a[0] >> 4 == 4 && ((i >= 2 && i < 6) || i == 10 || i == 11))
            mask = 0;
        else if (a[0] >> 4 == 6 && (i == 4 || i == 5))
            mask = 0;
        else if ((i >= tcp + 4 && i < tcp + 8) || i == tcp + 16 || i == tcp + 17)
            mask = 0;
        else if (i == tcp + 13)
            mask = 0xFF & ~TCP_PSH;
        if ((a[i] ^ b[i]) & mask)
            return 0;
    }
    return 1;
}

struct co_group {
    size_t first, last, count, gso_size, total, limit;
    struct co_cand cand;
    uint32_t next_seq;
    long next_id;
    unsigned int last_flags;
};

/* Coalesce n IP packets (packet i at pkt[i], in_len[i] bytes) into TUN writes, each with
 * its virtio header, back to back in `out` (out_cap bytes: the packets' length plus 10 per
 * packet always suffices); write k's length in write_len[k] (room for n). Returns the
 * number of writes, or -1 if out of memory or room. The rules are those of offload.py
 * `coalesce`, which this matches byte for byte. */
static long co_coalesce(size_t n, const unsigned char *const *pkt, const size_t *in_len,
                        unsigned char *out, size_t out_cap, size_t *write_len)
{
    struct co_cand *cand = NULL;
    unsigned char *is_cand = NULL;
    size_t *next = NULL, *open = NULL;
    struct co_group *groups = NULL;
    size_t i, k, n_groups = 0, n_open = 0, off = 0;
    long result = -1;

    cand = malloc((n ? n : 1) * sizeof *cand);
    is_cand = malloc(n ? n : 1);
    next = malloc((n ? n : 1) * sizeof *next);
    open = malloc((n ? n : 1) * sizeof *open);
    groups = malloc((n ? n : 1) * sizeof *groups);
    if (!cand || !is_cand || !next || !open || !groups)
        goto done;
    for (i = 0; i < n; i++) {
        memset(&cand[i], 0, sizeof cand[i]);
        is_cand[i] = (unsigned char)co_candidate(pkt[i], in_len[i], &cand[i]);
        if (is_cand[i]) {
            unsigned char ok;
            larval_tcp_checksums_ok(1, pkt[i], &in_len[i], &cand[i].tcp, &ok);
            is_cand[i] = ok;
        }
    }
    /* Groups in the order of their first packet; a packet that is no candidate is a
     * group of one that nothing joins. */
    for (i = 0; i < n; i++) {
        struct co_group *g = NULL;
        struct co_cand *c = &cand[i];
        size_t payload = in_len[i] - (is_cand[i] ? c->hlen : 0), found = n_open;

        next[i] = (size_t)-1;
        if (is_cand[i]) {
            for (k = 0; k < n_open; k++) {
                struct co_group *o = &groups[open[k]];
                if (co_same_flow(pkt[o->first], o->cand.tcp, pkt[i], c->tcp)) {
                    found = k;
                    break;
                }
            }
            if (found < n_open) {
                g = &groups[open[found]];
                if (g->cand.hlen == c->hlen && pkt[g->first][0] == pkt[i][0]
                    && co_same_shape(pkt[g->first], pkt[i], c->tcp, c->hlen)
                    && c->seq == g->next_seq && payload <= g->gso_size
                    && c->ip_id == g->next_id && g->total + payload <= g->limit) {
                    next[g->last] = i;
                    g->last = i;
                    g->count++;
                    g->total += payload;
                    g->last_flags = c->flags;
                    g->next_seq = c->seq + (uint32_t)payload;
                    if (c->ip_id >= 0)
                        g->next_id = (c->ip_id + 1) & 0xFFFF;
                } else {
                    /* A new write for the flow: the old one takes no more. */
                    open[found] = open[--n_open];
                    found = n_open;
                    g = NULL;
                }
            }
        }
        if (g == NULL) {
            g = &groups[n_groups];
            g->first = g->last = i;
            g->count = 1;
            g->cand = *c;
            g->gso_size = payload;
            g->total = in_len[i];
            g->limit = 0xFFFF + (pkt[i][0] >> 4 == 6 ? 40 : 0);
            g->last_flags = c->flags;
            g->next_seq = c->seq + (uint32_t)payload;
            g->next_id = c->ip_id < 0 ? -1 : (c->ip_id + 1) & 0xFFFF;
            if (is_cand[i]) {
                open[n_open] = n_groups;
                found = n_open++;
            }
            n_groups++;
        }
        /* Nothing may follow a segment with PSH, or one shorter than the first. */
        if (is_cand[i] && found < n_open && (c->flags & TCP_PSH || payload < g->gso_size))
            open[found] = open[--n_open];
    }
    for (k = 0; k < n_groups; k++) {
        struct co_group *g = &groups[k];
        const unsigned char *first = pkt[g->first];
        size_t tcp = g->cand.tcp, hlen = g->cand.hlen, need;
        unsigned char *w = out + off;
        uint16_t vnet[5];
        uint64_t pseudo;
        unsigned char gso_type;

        need = VNET_HDR_LEN + (g->count == 1 ? in_len[g->first] : g->total);
        if (need > out_cap - off)
            goto done;
        if (g->count == 1) {
            memset(w, 0, VNET_HDR_LEN);
            memcpy(w + VNET_HDR_LEN, first, in_len[g->first]);
        } else {
            unsigned char *head = w + VNET_HDR_LEN, *q = head + hlen;
            memcpy(head, first, hlen);
            if (first[0] >> 4 == 4) {
                put16(head + 2, (uint32_t)g->total);
                head[10] = head[11] = 0;
                put16(head + 10, fold(sum16(head, tcp)));
                gso_type = VNET_GSO_TCPV4;
                pseudo = sum16(head + 12, 8);
            } else {
                put16(head + 4, (uint32_t)(g->total - 40));
                gso_type = VNET_GSO_TCPV6;
                pseudo = sum16(head + 8, 32);
            }
            head[tcp + 13] |= (unsigned char)(g->last_flags & TCP_PSH);
            /* CHECKSUM_PARTIAL: the pseudo-header sum, not complemented. */
            pseudo = (pseudo + 6 + g->total - tcp) % 0xFFFF;
            put16(head + tcp + 16, pseudo ? (uint32_t)pseudo : 0xFFFF);
            for (i = g->first; i != (size_t)-1; i = next[i]) {
                memcpy(q, pkt[i] + hlen, in_len[i] - hlen);
                q += in_len[i] - hlen;
            }
            /* struct virtio_net_hdr in the host's byte order (legacy virtio). */
            w[0] = VNET_F_NEEDS_CSUM;
            w[1] = gso_type;
            vnet[0] = (uint16_t)hlen;
            vnet[1] = (uint16_t)g->gso_size;
            vnet[2] = (uint16_t)tcp;
            vnet[3] = 16;
            memcpy(w + 2, vnet, 8);
        }
        write_len[k] = need;
        off += need;
    }
    result = (long)n_groups;
done:
    free(cand);
    free(is_cand);
    free(next);
    free(open);
    free(groups);
    return result;
}

/* `co_coalesce` of n packets back to back in `in` (packet i in_len[i] bytes). */
long larval_tcp_coalesce(size_t n, const unsigned char *in, const size_t *in_len,
                         unsigned char *out, size_t out_cap, size_t *write_len)
{
    const unsigned char **pkt = malloc((n ? n : 1) * sizeof *pkt);
    size_t i;
    long result;

    if (pkt == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        pkt[i] = in;
        in += in_len[i];
    }
    result = co_coalesce(n, pkt, in_len, out, out_cap, write_len);
    free(pkt);
    return result;
}

/* `co_coalesce` of packets left where they are, in runs: run r holds run_count[r]
 * packets in the buffer at bases[r] (a decrypted batch, say); packet i, counted over all
 * runs in order, is in_len[i] bytes from start[i] of its run's buffer. No copy of the
 * packets is made before the writes are built. */
long larval_tcp_coalesce_runs(size_t n_runs, const unsigned char *const *bases,
                              const size_t *run_count, const size_t *start,
                              const size_t *in_len, unsigned char *out, size_t out_cap,
                              size_t *write_len)
{
    const unsigned char **pkt;
    size_t n = 0, i = 0, r, k;
    long result;

    for (r = 0; r < n_runs; r++)
        n += run_count[r];
    pkt = malloc((n ? n : 1) * sizeof *pkt);
    if (pkt == NULL)
        return -1;
    for (r = 0; r < n_runs; r++)
        for (k = 0; k < run_count[r]; k++, i++)
            pkt[i] = bases[r] + start[i];
    result = co_coalesce(n, pkt, in_len, out, out_cap, write_len);
    free(pkt);
    return result;
}

/* An SA of larval_gcm_seal_many and larval_gcm_open_many: its context, SPI and ESN flag,
 * set once where the SA is made (the Python object keeps one per SA beside the context's
 * owner), and room for the state only the packet path writes: the outbound sequence
 * number and counters, the inbound anti-replay window (T and `size` bits, word k for bits
 * 64k to 64k + 63, as larval_gcm_open_window keeps it) and counters. One block per SA, so
 * that a packet of a batch spread over many SAs touches little memory of its SA: those
 * calls key one context of their own with the block's key rather than use the SA's
 * contexts (`struct scratch`). */
struct larval_gcm_sa {
    struct larval_gcm *g;
    uint32_t spi;
    unsigned char esn;
    unsigned char key_len; /* 16 or 32 */
    unsigned char salt[4];
    unsigned char key[32]; /* the AES key, for the calls of many SAs (`struct scratch`) */
    unsigned char box_shift[2]; /* the inbound box's (below): source, destination */
    /* outbound */
    uint64_t seq;       /* the highest sequence number sent */
    uint64_t seq_check; /* from this number on, Python decides (exhausted, reservation) */
    uint64_t packets_out;
    uint64_t bytes_out;
    /* The SADB's counts against the SA's lifetimes (larval/sadb/sa.py `account`), for the
     * packets the calls of many SAs seal, and those they open inside the SA's box: bytes
     * and packets, and the bytes at which a call reports the SA (`life_count`). */
    uint64_t life_bytes;
    uint64_t life_packets;
    uint64_t life_notice;
    /* inbound */
    uint64_t top; /* T */
    uint64_t packets_in;
    uint64_t bytes_in;
    /* The inbound policy check's box (`larval_gcm_sa_box`): an IPv4 packet whose source
     * and destination lie in it (address >> shift == net) passes, while the SPD is at
     * box_generation, with the shifts above. Kept only where its verdict is to pass;
     * a box_shift beyond 32 for none. */
    uint64_t box_generation;
    uint32_t box_net[2]; /* source, destination */
    uint32_t size;       /* the window's bits, 0 for none */
    uint32_t min_len;    /* the smallest ESP packet of the SA */
    uint64_t bitmap[];
};

/* A new SA block for context `g` (not owned: the caller keeps it as long) and the same
 * key (16 or 32 bytes) and salt, zeroed but for what is given, with a window of `size`
 * bits (at most 4096), its bit 0 set (T = 0 counts as received, as larval/esp/replay.py
 * starts); NULL if out of memory, the key is of another length or the window is too
 * large. */
struct larval_gcm_sa *larval_gcm_sa_new(struct larval_gcm *g, const unsigned char *key,
                                        size_t key_len, const unsigned char *salt,
                                        uint32_t spi, int esn, uint32_t size,
                                        uint32_t min_len)
{
    size_t words = size ? (size + 63) / 64 : 1;
    struct larval_gcm_sa *sa;

    if (size > 4096 || (key_len != 16 && key_len != 32))
        return NULL;
    sa = calloc(1, sizeof *sa + words * sizeof(uint64_t));
    if (sa == NULL)
        return NULL;
    sa->g = g;
    memcpy(sa->key, key, key_len);
    sa->key_len = (unsigned char)key_len;
    memcpy(sa->salt, salt, sizeof sa->salt);
    sa->spi = spi;
    sa->esn = (unsigned char)(esn != 0);
    sa->size = size;
    sa->min_len = min_len;
    sa->box_shift[0] = sa->box_shift[1] = LARVAL_NO_BOX;
    sa->life_notice = UINT64_MAX;
    sa->bitmap[0] = 1;
    return sa;
}

/* Count a packet of `len` bytes against `sa`'s lifetimes; 1 if that takes its bytes to
 * life_notice, which is then set past any count, so that the SA is reported once (the
 * SADB's next pass sets it again), else 0. */
static int life_count(struct larval_gcm_sa *sa, size_t len)
{
    sa->life_packets++;
    sa->life_bytes += len;
    if (sa->life_bytes < sa->life_notice)
        return 0;
    sa->life_notice = UINT64_MAX;
    return 1;
}

/* Keep no box for `sa`: every packet is left to Python's check. */
void larval_gcm_sa_unbox(struct larval_gcm_sa *sa)
{
    sa->box_shift[0] = sa->box_shift[1] = LARVAL_NO_BOX;
}

/* Keep `sa`'s IPv4 box for the inbound policy check: while the SPD is at `generation`, a
 * packet from a source s with s >> src_shift == src_net to a destination d with
 * d >> dst_shift == dst_net passes (a shift of 32 takes every address). 0, or -1, with
 * no box kept, for a shift beyond 32. Set under the SA's lock, as the receiving calls
 * read it. */
int larval_gcm_sa_box(struct larval_gcm_sa *sa, uint64_t generation, uint32_t src_net,
                      unsigned int src_shift, uint32_t dst_net, unsigned int dst_shift)
{
    if (src_shift > 32 || dst_shift > 32) {
        larval_gcm_sa_unbox(sa);
        return -1;
    }
    sa->box_generation = generation;
    sa->box_net[0] = src_net;
    sa->box_net[1] = dst_net;
    sa->box_shift[0] = (unsigned char)src_shift;
    sa->box_shift[1] = (unsigned char)dst_shift;
    return 0;
}

/* Whether `a` >> `shift` is `net`, for a shift of 0 to 32 (C leaves a shift of 32 of a
 * 32-bit word undefined: it takes every address). */
static int box_holds(uint32_t a, unsigned int shift, uint32_t net)
{
    return shift >= 32 ? net == 0 : a >> shift == net;
}

/* Whether the plaintext `ip` of `len` bytes, received on `sa` while the SPD is at
 * `generation`, is an IPv4 packet without options whose addresses lie in the SA's box
 * (`larval_gcm_sa_box`), so that it passes the inbound policy check. */
static int box_passes(const struct larval_gcm_sa *sa, uint64_t generation,
                      const unsigned char *ip, uint32_t len)
{
    unsigned int src_shift = sa->box_shift[0], dst_shift = sa->box_shift[1];

    return src_shift <= 32 && dst_shift <= 32 && sa->box_generation == generation
           && len >= 20 && ip[0] == 0x45 && box_holds(get32(ip + 12), src_shift, sa->box_net[0])
           && box_holds(get32(ip + 16), dst_shift, sa->box_net[1]);
}

void larval_gcm_sa_free(struct larval_gcm_sa *sa)
{
    if (sa == NULL)
        return;
    OPENSSL_cleanse(sa->key, sizeof sa->key);
    OPENSSL_cleanse(sa->salt, sizeof sa->salt);
    free(sa);
}

/* The context a call of packets of many SAs seals or opens with: keyed with one SA's key
 * at a time (`scratch_for`), again only when the SA changes. With thousands of SAs, a
 * packet then reads 36 bytes of its SA's block rather than the SA's own OpenSSL context
 * (its key schedule and GHASH tables, hundreds of bytes apart), which is out of the cache
 * by the time that SA's next packet comes; keying costs less than reading it from memory.
 * One per call and direction (the calls run without the GIL, on several threads at once),
 * a context for each key length, freed (cleansed by OpenSSL) at the end of the call. */
struct scratch {
    int encrypt;
    EVP_CIPHER_CTX *ctx[2]; /* AES-128-GCM, AES-256-GCM */
    const struct larval_gcm_sa *keyed[2];
};

/* `s`'s context keyed with `sa`'s key, or NULL if OpenSSL fails. */
static EVP_CIPHER_CTX *scratch_for(struct scratch *s, const struct larval_gcm_sa *sa)
{
    int k = sa->key_len == 32;
    EVP_CIPHER_CTX *ctx = s->ctx[k];

    if (ctx == NULL) {
        const EVP_CIPHER *cipher = k ? EVP_aes_256_gcm() : EVP_aes_128_gcm();

        ctx = s->ctx[k] = EVP_CIPHER_CTX_new();
        if (ctx == NULL
            || EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, s->encrypt) != 1)
            return NULL;
    }
    if (s->keyed[k] != sa) {
        s->keyed[k] = NULL;
        if (EVP_CipherInit_ex(ctx, NULL, NULL, sa->key, NULL, s->encrypt) != 1)
            return NULL;
        s->keyed[k] = sa;
    }
    return ctx;
}

static void scratch_free(struct scratch *s)
{
    EVP_CIPHER_CTX_free(s->ctx[0]);
    EVP_CIPHER_CTX_free(s->ctx[1]);
}

/* Ask for the block of the SA `ahead` packets on to be read into the cache (its numbers,
 * key and counters, in at most four lines: calloc aligns it to 16 bytes, not 64), so
 * that with thousands of SAs its read from memory overlaps this packet's AES rather
 * than follows it. A hint only: it changes no result. */
static void prefetch_sa(struct larval_gcm_sa *const *sa, size_t i, size_t n, size_t ahead)
{
    const struct larval_gcm_sa *next;

    if (i + ahead >= n || (next = sa[i + ahead]) == NULL)
        return;
    __builtin_prefetch(next, 1);
    __builtin_prefetch((const char *)next + 64, 1);
    __builtin_prefetch((const char *)next + 128, 1);
    __builtin_prefetch((const char *)next + sizeof *next + sizeof next->bitmap[0] - 1, 1);
}

/* Packets of several SAs in one call (a batch spread over many SAs, one packet each):
 * packet i is sealed with sa[i], numbered by it (below), as `larval_gcm_seal` would seal
 * a batch of that one packet, or received on sa[i] as `larval_gcm_open_window` receives
 * (below). To seal, a NULL sa[i] leaves packet i out (out_len[i] = 0), and a NULL
 * nh gives each packet the Next Header of its IP version (4 for IPv4, else 41: tunnel
 * mode, RFC 4303 §2.6). The results are per packet. A sealed packet is counted against
 * its SA's lifetimes (`life_count`): where that reports the SA, out_len[i] has its top bit
 * (LARVAL_NOTICED) set as well. How many packets have it, or -1 if OpenSSL fails or `out`
 * is too small. */
int larval_gcm_seal_many(struct larval_gcm_sa *const *sa, size_t n, const unsigned char *in,
                         const size_t *in_len, const unsigned char *nh, unsigned char *out,
                         size_t out_cap, size_t *out_len)
{
    struct scratch scratch = {1, {NULL, NULL}, {NULL, NULL}};
    size_t i, off = 0;
    int rc = 0;

    for (i = 0; i < n; i++) {
        struct larval_gcm_sa *one = sa[i];
        size_t made;
        size_t len = in_len[i];
        EVP_CIPHER_CTX *ctx;
        uint64_t seq;
        unsigned char next;

        out_len[i] = 0;
        prefetch_sa(sa, i, n, 2);
        /* The SA numbers its packets: the next number, unless it reached seq_check, where
         * Python decides (larval/esp/sa.py `_seq_slow`: exhausted, a reservation to ask
         * for, or not reserved). Then the packet is left out, and so are the SA's later
         * ones in this call, since its number does not move. */
        if (one == NULL || (seq = one->seq + 1) == 0 || seq >= one->seq_check) {
            in += len;
            continue;
        }
        if (nh != NULL)
            next = nh[i];
        else
            next = len > 0 && in[0] >> 4 == 4 ? 4 : 41;
        ctx = scratch_for(&scratch, one);
        if (ctx == NULL
            || seal_with(ctx, one->salt, one->spi, seq, one->esn, 1, in, &len, &next,
                         out + off, out_cap - off, out_len + i) != 0) {
            rc = -1;
            break;
        }
        one->seq = seq;
        one->packets_out++;
        one->bytes_out += len;
        made = out_len[i];
        if (life_count(one, len)) {
            out_len[i] |= LARVAL_NOTICED;
            rc++;
        }
        in += len;
        off += made;
    }
    scratch_free(&scratch);
    return rc;
}

/* `larval_gcm_seal` of n packets of one SA numbered by it, as larval_gcm_seal_many numbers
 * them: the packets before its number reaches seq_check are sealed, the rest left to
 * Python. How many were sealed, or -1 if `out` is too small or OpenSSL fails (then
 * nothing is numbered). */
long larval_gcm_seal_run(struct larval_gcm_sa *sa, size_t n, const unsigned char *in,
                         const size_t *in_len, const unsigned char *nh, unsigned char *out,
                         size_t out_cap, size_t *out_len)
{
    uint64_t room = sa->seq_check > sa->seq ? sa->seq_check - sa->seq - 1 : 0;
    size_t k = n < room ? n : (size_t)room, i;
    uint64_t bytes = 0;

    if (k && larval_gcm_seal(sa->g, sa->spi, sa->seq + 1, sa->esn, k, in, in_len, nh, out,
                             out_cap, out_len) != 0)
        return -1;
    for (i = 0; i < k; i++)
        bytes += in_len[i];
    sa->seq += k;
    sa->packets_out += k;
    sa->bytes_out += bytes;
    return (long)k;
}

/* RFC 4303 §3.4.3 before the ICV, on `sa`'s window: the full sequence number of a
 * received 32-bit `seql` into *seq (ESN: RFC 4303 Appendix A2.2), and whether the window
 * takes it: LARVAL_OPEN_OK, or the drop (REPLAY, TOO_OLD, BEFORE, BEYOND; *seq is 0 for
 * the last two). -1 if the block holds no window for ESN (larval/esp/replay.py refuses
 * it). */
int larval_gcm_sa_check(const struct larval_gcm_sa *sa, uint32_t seql, uint64_t *seq)
{
    uint64_t t = sa->top, s = seql, diff;
    size_t size = sa->size;

    *seq = 0;
    if (sa->esn) {
        /* Case A (Tl >= W - 1): Seqh = Th, or Th + 1 below Bl; Case B (the window spans
         * two subspaces): Th - 1, or Th below Bl. */
        uint32_t tl = (uint32_t)t, bl = (uint32_t)(tl - size + 1);
        int64_t seqh;

        if (size == 0)
            return -1;
        seqh = (int64_t)(t >> 32) - ((uint64_t)tl < size - 1) + (seql < bl);
        if (seqh < 0)
            return LARVAL_OPEN_BEFORE;
        if (seqh > 0xFFFFFFFF)
            return LARVAL_OPEN_BEYOND;
        s |= (uint64_t)seqh << 32;
    }
    *seq = s;
    if (size && s <= t) {
        diff = t - s;
        if (diff >= size)
            return LARVAL_OPEN_TOO_OLD;
        if (sa->bitmap[diff / 64] >> (diff % 64) & 1)
            return LARVAL_OPEN_REPLAY;
    }
    return LARVAL_OPEN_OK;
}

/* Mark an authenticated sequence number `s` received on `sa`'s window, sliding it
 * forward past a higher one (RFC 4303 §3.4.3; `EspReplayWindow.update`). */
void larval_gcm_sa_update(struct larval_gcm_sa *sa, uint64_t s)
{
    uint64_t t = sa->top, diff;
    size_t size = sa->size;

    if (!size)
        return;
    if (s > t) {
        window_shift(sa->bitmap, (size + 63) / 64, size, s - t);
        sa->bitmap[0] |= 1;
        sa->top = s;
    } else {
        diff = t - s;
        sa->bitmap[diff / 64] |= (uint64_t)1 << (diff % 64);
    }
}

/* A packet numbered `s` with a payload of payload_len bytes passed every check on `sa`:
 * the window moves (`larval_gcm_sa_update`) and packets_in / bytes_in count it. */
void larval_gcm_sa_received(struct larval_gcm_sa *sa, uint64_t s, uint32_t payload_len)
{
    larval_gcm_sa_update(sa, s);
    sa->packets_in++;
    sa->bytes_in += payload_len;
}

/* RFC 4303 §3.4 for one ESP packet `p` of `len` bytes received on `sa`, in its order:
 * length and SPI; the replay check (`larval_gcm_sa_check`); the ICV and the padding
 * (plaintext to `out`, max(len - 32, 0) bytes of room); and only then, for a packet that
 * passed, the window update and the counters (`larval_gcm_sa_received`). *status says
 * what became of it (LARVAL_OPEN_*), *seq its full sequence number where one was
 * inferred (else 0), and for an OK packet *payload_len and *nh. Opened with the SA's
 * own context, or with `scratch`'s where there is one. 0, or -1 if OpenSSL fails
 * outright or the block holds no window for ESN. */
static int sa_open_one(struct larval_gcm_sa *sa, struct scratch *scratch,
                       const unsigned char *p, size_t len, unsigned char *out,
                       unsigned char *status, uint64_t *seq, uint32_t *payload_len,
                       unsigned char *nh)
{
    EVP_CIPHER_CTX *ctx;
    int checked;

    *seq = 0;
    *payload_len = 0;
    *nh = 0;
    if (len < sa->min_len || len < 34 || len - 32 > INT32_MAX) {
        *status = LARVAL_OPEN_TRUNCATED;
        return 0;
    }
    if (get32(p) != sa->spi) {
        *status = LARVAL_OPEN_SPI;
        return 0;
    }
    /* RFC 4303 §3.4.3: the replay check comes before the ICV check. */
    checked = larval_gcm_sa_check(sa, get32(p + 4), seq);
    if (checked < 0)
        return -1;
    if (checked != LARVAL_OPEN_OK) {
        *status = (unsigned char)checked;
        return 0;
    }
    ctx = scratch != NULL ? scratch_for(scratch, sa) : sa->g->dec;
    if (ctx == NULL
        || gcm_open_one(ctx, sa->salt, sa->esn, p, len, (uint32_t)(*seq >> 32), out, status,
                        payload_len, nh))
        return -1;
    if (*status == LARVAL_OPEN_OK)
        larval_gcm_sa_received(sa, *seq, *payload_len);
    return 0;
}

/* The packet-by-packet receive of RFC 4303 §3.4 (`sa_open_one`) for n ESP packets, in
 * order, packet i on sa[i * step] (step 0: all on one SA; a packet sees its SA's window
 * as the earlier packets left it). Packet i is in_len[i] bytes of `in`, back to back, or
 * at in + in_off[i] where in_off is not NULL; its
 * plaintext goes to out + out_off[i] (offsets running over max(in_len - 32, 0)), with
 * status[i], seq[i], payload_len[i] and nh[i] as `sa_open_one` gives them; packets of
 * several SAs (step 1) are opened with a scratch context, those of one with its own. 0,
 * or -1 as `sa_open_one`. */
static int open_run(struct larval_gcm_sa *const *sa, size_t step, size_t n,
                    const unsigned char *in, const size_t *in_off, const size_t *in_len,
                    unsigned char *out, size_t *out_off, unsigned char *status,
                    uint64_t *seq, uint32_t *payload_len, unsigned char *nh,
                    uint64_t generation, unsigned char *boxed)
{
    struct scratch scratch = {0, {NULL, NULL}, {NULL, NULL}};
    const unsigned char *p = in;
    size_t i, off = 0;
    int rc = 0;

    for (i = 0; i < n; i++) {
        size_t len = in_len[i];

        if (in_off != NULL)
            p = in + in_off[i];
        out_off[i] = off;
        if (step)
            prefetch_sa(sa, i, n, 2);
        if (sa_open_one(sa[i * step], step ? &scratch : NULL, p, len, out + off, status + i,
                        seq + i, payload_len + i, nh + i)
            != 0) {
            rc = -1;
            break;
        }
        if (boxed != NULL
            && (boxed[i] = status[i] == LARVAL_OPEN_OK && nh[i] != LARVAL_NH_NONE
                           && box_passes(sa[i * step], generation, out + off, payload_len[i]))
            && life_count(sa[i * step], payload_len[i]))
            boxed[i] |= LARVAL_BOX_NOTICED;
        p += len;
        off += len > 32 ? len - 32 : 0;
    }
    scratch_free(&scratch);
    return rc;
}

/* `open_run` of n packets of one SA (a batch of one SA's packets). */
int larval_gcm_open_window(struct larval_gcm_sa *sa, size_t n, const unsigned char *in,
                           const size_t *in_len, unsigned char *out, size_t *out_off,
                           unsigned char *status, uint64_t *seq, uint32_t *payload_len,
                           unsigned char *nh)
{
    return open_run(&sa, 0, n, in, NULL, in_len, out, out_off, status, seq, payload_len,
                    nh, 0, NULL);
}

/* `open_run` of packets of several SAs, packet i on sa[i], back to back in `in` or, with
 * in_off, where it lies in a receive's buffer. Where `boxed` is not NULL, boxed[i] says
 * whether packet i opened (not a dummy) to a plaintext inside its SA's box at the SPD's
 * `generation` (`box_passes`): a tunnel's packet that passes the inbound policy check.
 * Such a packet is counted against its SA's lifetimes (`life_count`), and where that
 * reports the SA, boxed[i] has LARVAL_BOX_NOTICED as well. */
int larval_gcm_open_many(struct larval_gcm_sa *const *sa, size_t n, const unsigned char *in,
                         const size_t *in_off, const size_t *in_len, unsigned char *out,
                         size_t *out_off, unsigned char *status, uint64_t *seq,
                         uint32_t *payload_len, unsigned char *nh, uint64_t generation,
                         unsigned char *boxed)
{
    return open_run(sa, 1, n, in, in_off, in_len, out, out_off, status, seq, payload_len,
                    nh, generation, boxed);
}

/* Whether n datagrams of UDP 4500 (datagram i in_len[i] bytes of `in`, back to back) are
 * all ESP of one SA (RFC 3948 §2.2: eight bytes at least, an SPI other than the non-ESP
 * marker's zeros, the same in each): that SPI, else -1. */
int64_t larval_esp_one_spi(const unsigned char *in, size_t n, const size_t *in_len)
{
    uint32_t spi;
    size_t i;

    if (n == 0 || in_len[0] < 8)
        return -1;
    spi = get32(in);
    if (spi == 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (in_len[i] < 8 || get32(in) != spi)
            return -1;
        in += in_len[i];
    }
    return (int64_t)spi;
}

/* Each SPI of n datagrams of UDP 4500 (datagram i in_len[i] bytes of `in`, back to back)
 * into spi[i], if every one is ESP (RFC 3948 §2.2: eight bytes at least, the first four
 * not the non-ESP marker's zeros): 0, else -1 (spi[] then holds those before). */
int larval_esp_spis(const unsigned char *in, size_t n, const size_t *in_len, uint32_t *spi)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (in_len[i] < 8 || (spi[i] = get32(in)) == 0)
            return -1;
        in += in_len[i];
    }
    return 0;
}

/* UDP GSO sends of many datagrams in few system calls, for larval/net/udp.py
 * (`UdpSocket.send_segments`, whose Python is the reference): the same messages, made
 * the same way, handed to sendmmsg(2) up to LARVAL_MMSG at a time. Built with
 * _GNU_SOURCE (larval/esp/_helper_build.py) for sendmmsg. */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define LARVAL_MMSG 64
#define LARVAL_SOL_UDP 17      /* include/uapi/linux/udp.h */
#define LARVAL_UDP_SEGMENT 103
#define LARVAL_UDP_MAX_SEGMENTS 64

/* Send n datagrams (datagram i in_len[i] bytes of `in`, back to back) through `fd` to
 * the socket address `addr` (addrlen bytes). Runs of one size, a shorter last one
 * allowed, of at most LARVAL_UDP_MAX_SEGMENTS datagrams and max_payload bytes, go as one
 * message with a UDP_SEGMENT control message; a datagram alone goes as a plain message:
 * the grouping of send_segments. *done: the datagrams of the messages the kernel took,
 * *gso_msgs: how many of those messages were GSO ones. 0 once all are sent; else the
 * errno of the message that failed, which starts at datagram *done (nothing after it
 * was sent). */
int larval_udp_send_gso(int fd, const unsigned char *in, size_t n, const size_t *in_len,
                        const unsigned char *addr, size_t addrlen, size_t max_payload,
                        size_t *done, size_t *gso_msgs)
{
    struct mmsghdr msgs[LARVAL_MMSG];
    struct iovec iov[LARVAL_MMSG];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl[LARVAL_MMSG];
    size_t first[LARVAL_MMSG], count[LARVAL_MMSG];
    size_t i = 0;

    *done = 0;
    *gso_msgs = 0;
    while (i < n) {
        size_t m = 0, sent = 0;

        memset(msgs, 0, sizeof msgs);
        while (i < n && m < LARVAL_MMSG) {
            size_t size = in_len[i], j = i + 1, bytes = size;
            struct msghdr *h = &msgs[m].msg_hdr;

            if (size) {
                size_t most = max_payload / size, limit;
                if (most > LARVAL_UDP_MAX_SEGMENTS)
                    most = LARVAL_UDP_MAX_SEGMENTS;
                limit = i + most;
                while (j < n && j < limit) {
                    size_t length = in_len[j];
                    if (length > size)
                        break;
                    j++;
                    bytes += length;
                    if (length < size)
                        break; /* a shorter datagram ends the batch (udp_gso_segment) */
                }
            }
            iov[m].iov_base = (void *)in;
            iov[m].iov_len = bytes;
            in += bytes;
            h->msg_name = (void *)addr;
            h->msg_namelen = (socklen_t)addrlen;
            h->msg_iov = &iov[m];
            h->msg_iovlen = 1;
            if (j - i > 1) {
                struct cmsghdr *c = &ctl[m].align;
                uint16_t gso = (uint16_t)size;
                memset(&ctl[m], 0, sizeof ctl[m]);
                c->cmsg_level = LARVAL_SOL_UDP;
                c->cmsg_type = LARVAL_UDP_SEGMENT;
                c->cmsg_len = CMSG_LEN(sizeof gso);
                memcpy(CMSG_DATA(c), &gso, sizeof gso);
                h->msg_control = ctl[m].buf;
                h->msg_controllen = sizeof ctl[m].buf;
            }
            first[m] = i;
            count[m] = j - i;
            m++;
            i = j;
        }
        while (sent < m) {
            int r = sendmmsg(fd, msgs + sent, (unsigned int)(m - sent), 0);
            size_t k;
            if (r < 0) {
                *done = first[sent];
                return errno ? errno : EIO;
            }
            for (k = sent; k < sent + (size_t)r; k++) {
                *done += count[k];
                *gso_msgs += count[k] > 1;
            }
            sent += (size_t)r;
        }
    }
    return 0;
}

/* UDP receives of many GRO batches in one system call, for larval/net/udp.py
 * (`UdpSocket.recv_ready`; `recv_into` is the reference): recvmmsg(2) without waiting,
 * each message into its own `room` bytes of `buf`, then moved down to follow the one
 * before it, so that what came lies back to back from `buf`. */
#define LARVAL_UDP_GRO 104

/* Up to max_msgs (at most LARVAL_MMSG) messages ready on `fd`; `buf` holds
 * max_msgs * room bytes. Per message k, as recv_into reads one: kept[k] bytes kept (a
 * GRO batch cut short keeps its whole datagrams; a datagram cut short, none), seg[k] its
 * segment size, count[k] its datagrams, trunc[k] whether it was cut short, and the
 * sender's address in names + k * name_room (name_len[k] bytes). The number of
 * messages, or -errno if there was none (-EAGAIN: nothing ready). */
long larval_udp_recv_many(int fd, unsigned char *buf, size_t room, size_t max_msgs,
                          size_t *kept, size_t *seg, size_t *count, unsigned char *trunc,
                          unsigned char *names, size_t name_room, uint32_t *name_len)
{
    struct mmsghdr msgs[LARVAL_MMSG];
    struct iovec iov[LARVAL_MMSG];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl[LARVAL_MMSG];
    size_t k, off = 0;
    int r;

    if (max_msgs > LARVAL_MMSG)
        max_msgs = LARVAL_MMSG;
    memset(msgs, 0, sizeof msgs);
    for (k = 0; k < max_msgs; k++) {
        struct msghdr *h = &msgs[k].msg_hdr;
        iov[k].iov_base = buf + k * room;
        iov[k].iov_len = room;
        h->msg_iov = &iov[k];
        h->msg_iovlen = 1;
        h->msg_name = names + k * name_room;
        h->msg_namelen = (socklen_t)name_room;
        h->msg_control = ctl[k].buf;
        h->msg_controllen = sizeof ctl[k].buf;
    }
    r = recvmmsg(fd, msgs, (unsigned int)max_msgs, MSG_DONTWAIT, NULL);
    if (r < 0)
        return -(long)(errno ? errno : EIO);
    for (k = 0; k < (size_t)r; k++) {
        struct msghdr *h = &msgs[k].msg_hdr;
        struct cmsghdr *c;
        size_t n = msgs[k].msg_len, size = n;

        for (c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level == LARVAL_SOL_UDP && c->cmsg_type == LARVAL_UDP_GRO
                && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int v;
                memcpy(&v, CMSG_DATA(c), sizeof v);
                size = v > 0 ? (size_t)v : n; /* no segment size: one datagram */
            }
        }
        trunc[k] = (h->msg_flags & MSG_TRUNC) != 0;
        name_len[k] = h->msg_namelen;
        if (trunc[k] && size >= n) {
            n = 0; /* one datagram, cut short */
            count[k] = 0;
        } else {
            if (trunc[k])
                n -= n % size; /* a GRO batch: the whole datagrams before the cut */
            if (size >= n || size == 0) {
                size = n;
                count[k] = 1;
            } else {
                count[k] = (n + size - 1) / size;
            }
        }
        kept[k] = n;
        seg[k] = size;
        if (n && buf + off != buf + k * room)
            memmove(buf + off, buf + k * room, n);
        off += n;
    }
    return r;
}
