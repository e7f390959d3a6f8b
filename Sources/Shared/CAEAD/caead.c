// swift-crypto links BoringSSL into every binary that uses it, with each symbol prefixed
// "CCryptoBoringSSL_" (it is not a product we could import). Its Swift API sets up a cipher
// context and allocates the result for every call; a tunnel seals every packet, so this file calls
// BoringSSL's EVP_AEAD interface directly: one context per key, in-place seal and open, no
// allocation. SharedTests checks that both produce the same bytes.
#include "caead.h"

typedef struct evp_aead_st EVP_AEAD;
typedef struct evp_aead_ctx_st EVP_AEAD_CTX;

extern const EVP_AEAD *CCryptoBoringSSL_EVP_aead_chacha20_poly1305(void);
extern const EVP_AEAD *CCryptoBoringSSL_EVP_aead_aes_256_gcm(void);
extern const EVP_AEAD *CCryptoBoringSSL_EVP_aead_xchacha20_poly1305(void);
extern EVP_AEAD_CTX *CCryptoBoringSSL_EVP_AEAD_CTX_new(const EVP_AEAD *aead, const uint8_t *key, size_t key_len,
                                                       size_t tag_len);
extern void CCryptoBoringSSL_EVP_AEAD_CTX_free(EVP_AEAD_CTX *ctx);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter(
    const EVP_AEAD_CTX *ctx, uint8_t *out, uint8_t *out_tag, size_t *out_tag_len, size_t max_out_tag_len,
    const uint8_t *nonce, size_t nonce_len, const uint8_t *in, size_t in_len, const uint8_t *extra_in,
    size_t extra_in_len, const uint8_t *ad, size_t ad_len);
extern int CCryptoBoringSSL_EVP_AEAD_CTX_open_gather(
    const EVP_AEAD_CTX *ctx, uint8_t *out, const uint8_t *nonce, size_t nonce_len, const uint8_t *in,
    size_t in_len, const uint8_t *in_tag, size_t in_tag_len, const uint8_t *ad, size_t ad_len);
extern void CCryptoBoringSSL_ERR_clear_error(void);

enum { KEY_LENGTH = 32, TAG_LENGTH = 16, NONCE_LENGTH = 12, EXTENDED_NONCE_LENGTH = 24 };

caead_key *caead_chacha20_poly1305_new(const uint8_t *key32) {
    return (caead_key *)CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_chacha20_poly1305(), key32,
                                                          KEY_LENGTH, TAG_LENGTH);
}

caead_key *caead_aes_256_gcm_new(const uint8_t *key32) {
    return (caead_key *)CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_aes_256_gcm(), key32, KEY_LENGTH,
                                                          TAG_LENGTH);
}

caead_key *caead_xchacha20_poly1305_new(const uint8_t *key32) {
    return (caead_key *)CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_xchacha20_poly1305(), key32,
                                                          KEY_LENGTH, TAG_LENGTH);
}

void caead_free(caead_key *key) { CCryptoBoringSSL_EVP_AEAD_CTX_free((EVP_AEAD_CTX *)key); }

int caead_seal(const caead_key *key, uint8_t *data, size_t length, uint8_t *tag,
               const uint8_t *nonce12, const uint8_t *ad, size_t ad_length) {
    size_t tag_length = 0;
    int ok = CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter((const EVP_AEAD_CTX *)key, data, tag, &tag_length, TAG_LENGTH,
                                                        nonce12, NONCE_LENGTH, data, length, NULL, 0, ad, ad_length);
    return ok == 1 && tag_length == TAG_LENGTH;
}

int caead_open(const caead_key *key, uint8_t *data, size_t length, const uint8_t *tag,
               const uint8_t *nonce12, const uint8_t *ad, size_t ad_length) {
    if (CCryptoBoringSSL_EVP_AEAD_CTX_open_gather((const EVP_AEAD_CTX *)key, data, nonce12, NONCE_LENGTH, data, length,
                                                  tag, TAG_LENGTH, ad, ad_length) == 1) {
        return 1;
    }
    // A forged or damaged datagram is routine here: do not let BoringSSL's error queue keep it.
    CCryptoBoringSSL_ERR_clear_error();
    return 0;
}

int caead_xseal(const caead_key *key, uint8_t *data, size_t length, uint8_t *tag,
                const uint8_t *nonce24, const uint8_t *ad, size_t ad_length) {
    size_t tag_length = 0;
    int ok = CCryptoBoringSSL_EVP_AEAD_CTX_seal_scatter((const EVP_AEAD_CTX *)key, data, tag, &tag_length, TAG_LENGTH,
                                                        nonce24, EXTENDED_NONCE_LENGTH, data, length, NULL, 0, ad,
                                                        ad_length);
    return ok == 1 && tag_length == TAG_LENGTH;
}

int caead_xopen(const caead_key *key, uint8_t *data, size_t length, const uint8_t *tag,
                const uint8_t *nonce24, const uint8_t *ad, size_t ad_length) {
    if (CCryptoBoringSSL_EVP_AEAD_CTX_open_gather((const EVP_AEAD_CTX *)key, data, nonce24, EXTENDED_NONCE_LENGTH, data,
                                                  length, tag, TAG_LENGTH, ad, ad_length) == 1) {
        return 1;
    }
    CCryptoBoringSSL_ERR_clear_error();
    return 0;
}
