/* The batch loop of ESP with AES-GCM (RFC 4106, 16-byte ICV) over OpenSSL's libcrypto.
 *
 * larval's Python path (larval/esp/sa.py, transforms.py) is the reference; this file does
 * the same per packet for a whole batch in one call, so that the work around each AES call
 * is C rather than Python. Python keeps every decision that carries state: sequence numbers
 * are handed in, the anti-replay check and window update stay in Python, and a failed ICV
 * is reported per packet for Python to count.
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

/* What `larval_gcm_open` found of each packet. */
#define LARVAL_OPEN_OK 0
#define LARVAL_OPEN_AUTH 1
#define LARVAL_OPEN_PADDING 2

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

/* Seal n packets numbered seq0, seq0 + 1, ...: inner packet i is in_len[i] bytes of `in`
 * (back to back) with Next Header nh[i]. The ESP packets go back to back into `out`
 * (out_cap bytes), their lengths into out_len. 0, or -1 if `out` is too small or OpenSSL
 * fails (nothing is then to be sent). */
int larval_gcm_seal(struct larval_gcm *g, uint32_t spi, uint64_t seq0, int esn, size_t n,
                    const unsigned char *in, const size_t *in_len, const unsigned char *nh,
                    unsigned char *out, size_t out_cap, size_t *out_len)
{
    EVP_CIPHER_CTX *ctx = g->enc;
    unsigned char nonce[12], aad[12];
    size_t off = 0, i, k;
    int outl;

    memcpy(nonce, g->salt, 4);
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

/* Verify and decrypt n ESP packets: packet i is in_len[i] bytes of `in` (back to back, each
 * at least 36 bytes, checked by the caller), with Seqh seq_hi[i] when esn. Its plaintext
 * (payload, padding, Pad Length, Next Header: in_len[i] - 32 bytes) goes to `out` at the
 * same running offset. status[i]: LARVAL_OPEN_OK, LARVAL_OPEN_AUTH if the ICV did not
 * verify (the plaintext is then to be ignored), or LARVAL_OPEN_PADDING if it verified but
 * the padding is not RFC 4303 §2.4's 1, 2, 3, ...; for an OK packet, payload_len[i] is the
 * payload's length and nh[i] its Next Header. Nothing here moves the replay window: the
 * caller does, for OK packets only (RFC 4303 §3.4.3). 0, or -1 if OpenSSL fails outright. */
int larval_gcm_open(struct larval_gcm *g, int esn, size_t n, const unsigned char *in,
                    const size_t *in_len, const uint32_t *seq_hi, unsigned char *out,
                    unsigned char *status, uint32_t *payload_len, unsigned char *nh)
{
    EVP_CIPHER_CTX *ctx = g->dec;
    unsigned char nonce[12], aad[12], tag[16];
    size_t i, k;
    int outl;

    memcpy(nonce, g->salt, 4);
    for (i = 0; i < n; i++) {
        size_t len = in_len[i];
        size_t clen = len - 32;
        const unsigned char *p = in;
        size_t padlen, end;

        in += len;
        status[i] = LARVAL_OPEN_AUTH;
        payload_len[i] = 0;
        nh[i] = 0;
        if (len < 34 || clen > INT32_MAX) {
            /* Shorter than the caller promised: no trailer to read, nothing verified. */
            if (len >= 32)
                out += clen;
            continue;
        }
        memcpy(nonce + 4, p + 8, 8);
        if (esn) {
            memcpy(aad, p, 4);
            put32(aad + 4, seq_hi[i]);
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
        if (EVP_DecryptFinal_ex(ctx, out + clen, &outl) == 1) {
            /* RFC 4303 §2.4: Pad Length, then 1, 2, 3, ... before it. */
            padlen = out[clen - 2];
            status[i] = LARVAL_OPEN_OK;
            if (padlen + 2 > clen) {
                status[i] = LARVAL_OPEN_PADDING;
            } else {
                end = clen - 2 - padlen;
                for (k = 0; k < padlen; k++) {
                    if (out[end + k] != (unsigned char)(k + 1)) {
                        status[i] = LARVAL_OPEN_PADDING;
                        break;
                    }
                }
                if (status[i] == LARVAL_OPEN_OK) {
                    payload_len[i] = (uint32_t)end;
                    nh[i] = out[clen - 1];
                }
            }
        }
        out += clen;
    }
    return 0;
}
