"""cffi build script of `larval.esp._gcm_batch`, the compiled AES-GCM batch loop.

`setup.py` names it in ``cffi_modules``; `pip install` builds it when gcc and OpenSSL's
headers (Debian `libssl-dev`) are there, and installs larval without it otherwise (the
Python path then runs, see `larval.esp.helper`).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    struct larval_gcm;
    const char *larval_openssl_version(void);
    struct larval_gcm *larval_gcm_new(const unsigned char *key, size_t key_len,
                                      const unsigned char *salt);
    void larval_gcm_free(struct larval_gcm *g);
    int larval_gcm_seal(struct larval_gcm *g, uint32_t spi, uint64_t seq0, int esn, size_t n,
                        const unsigned char *in, const size_t *in_len, const unsigned char *nh,
                        unsigned char *out, size_t out_cap, size_t *out_len);
    int larval_tcp_segment(const unsigned char *header, size_t hlen, size_t tcp, int version,
                           const unsigned char *payload, size_t payload_len, size_t size,
                           size_t count, uint32_t seq0, unsigned int flags0, uint32_t ip_id0,
                           uint32_t base_sum, unsigned char *out, size_t out_cap,
                           size_t *out_len);
    long larval_tcp_coalesce(size_t n, const unsigned char *in, const size_t *in_len,
                             unsigned char *out, size_t out_cap, size_t *write_len);
    long larval_tcp_coalesce_runs(size_t n_runs, const unsigned char *const *bases,
                                  const size_t *run_count, const size_t *start,
                                  const size_t *in_len, unsigned char *out, size_t out_cap,
                                  size_t *write_len);
    struct larval_gcm_sa {
        struct larval_gcm *g;
        uint32_t spi;
        unsigned char esn;
        unsigned char key_len;
        unsigned char salt[4];
        unsigned char key[32];
        unsigned char box_shift[2];
        uint64_t seq;
        uint64_t seq_check;
        uint64_t packets_out;
        uint64_t bytes_out;
        uint64_t life_bytes;
        uint64_t life_packets;
        uint64_t life_notice;
        uint64_t top;
        uint64_t packets_in;
        uint64_t bytes_in;
        uint64_t box_generation;
        uint32_t box_net[2];
        uint32_t size;
        uint32_t min_len;
        uint64_t bitmap[];
    };
    struct larval_gcm_sa *larval_gcm_sa_new(struct larval_gcm *g, const unsigned char *key,
                                            size_t key_len, const unsigned char *salt,
                                            uint32_t spi, int esn, uint32_t size,
                                            uint32_t min_len);
    void larval_gcm_sa_free(struct larval_gcm_sa *sa);
    void larval_gcm_sa_unbox(struct larval_gcm_sa *sa);
    int larval_gcm_sa_box(struct larval_gcm_sa *sa, uint64_t generation, uint32_t src_net,
                          unsigned int src_shift, uint32_t dst_net, unsigned int dst_shift);
    int larval_gcm_seal_many(struct larval_gcm_sa *const *sa, size_t n,
                             const unsigned char *in, const size_t *in_len,
                             const unsigned char *nh, unsigned char *out, size_t out_cap,
                             size_t *out_len);
    long larval_gcm_seal_run(struct larval_gcm_sa *sa, size_t n, const unsigned char *in,
                             const size_t *in_len, const unsigned char *nh,
                             unsigned char *out, size_t out_cap, size_t *out_len);
    int larval_gcm_open_many(struct larval_gcm_sa *const *sa, size_t n,
                             const unsigned char *in, const size_t *in_off,
                             const size_t *in_len, unsigned char *out, size_t *out_off,
                             unsigned char *status, uint64_t *seq, uint32_t *payload_len,
                             unsigned char *nh, uint64_t generation, unsigned char *boxed);
    int larval_gcm_sa_check(const struct larval_gcm_sa *sa, uint32_t seql, uint64_t *seq);
    void larval_gcm_sa_update(struct larval_gcm_sa *sa, uint64_t s);
    void larval_gcm_sa_received(struct larval_gcm_sa *sa, uint64_t s, uint32_t payload_len);
    int larval_gcm_open_window(struct larval_gcm_sa *sa, size_t n, const unsigned char *in,
                               const size_t *in_len, unsigned char *out, size_t *out_off,
                               unsigned char *status, uint64_t *seq, uint32_t *payload_len,
                               unsigned char *nh);
    int64_t larval_esp_one_spi(const unsigned char *in, size_t n, const size_t *in_len);
    int larval_esp_spis(const unsigned char *in, size_t n, const size_t *in_len,
                        uint32_t *spi);
    int larval_finish_checksum(unsigned char *p, size_t len, size_t csum_start,
                               size_t csum_offset);
    int larval_udp_send_gso(int fd, const unsigned char *in, size_t n, const size_t *in_len,
                            const unsigned char *addr, size_t addrlen, size_t max_payload,
                            size_t *done, size_t *gso_msgs);
    long larval_udp_recv_many(int fd, unsigned char *buf, size_t room, size_t max_msgs,
                              size_t *kept, size_t *seg, size_t *count, unsigned char *trunc,
                              unsigned char *names, size_t name_room, uint32_t *name_len);
    """
)
ffibuilder.set_source(
    "larval.esp._gcm_batch",
    (Path(__file__).parent / "_helper.c").read_text(),
    libraries=["crypto"],
    define_macros=[("_GNU_SOURCE", None)],  # sendmmsg(2)
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
