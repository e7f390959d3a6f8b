#ifndef UDPTUN_CAEAD_H
#define UDPTUN_CAEAD_H

#include <stddef.h>
#include <stdint.h>

/// An AEAD key schedule (ChaCha20-Poly1305, RFC 8439, or AES-256-GCM), set up once per key and
/// used for any number of in-place seals and opens without allocating. Immutable after creation,
/// so threads may share it. Both take 32-byte keys, 12-byte nonces and make 16-byte tags.
typedef struct caead_key caead_key;

/// A key for 32 bytes of key material, or NULL if out of memory.
caead_key *caead_chacha20_poly1305_new(const uint8_t *key32);
caead_key *caead_aes_256_gcm_new(const uint8_t *key32);
/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): 24-byte nonces, for caead_xseal and caead_xopen only.
caead_key *caead_xchacha20_poly1305_new(const uint8_t *key32);
void caead_free(caead_key *key);

/// Encrypts `length` bytes at `data` in place (length may be 0: then only `ad` is authenticated)
/// and writes the 16-byte tag to `tag`. `nonce12` is the 96-bit nonce. Returns 1, or 0 on failure.
int caead_seal(const caead_key *key, uint8_t *data, size_t length, uint8_t *tag,
               const uint8_t *nonce12, const uint8_t *ad, size_t ad_length);

/// Verifies `tag` over `ad` and the ciphertext and decrypts `length` bytes at `data` in place.
/// Returns 1 when the tag matched, else 0 (the bytes at `data` are then unspecified).
int caead_open(const caead_key *key, uint8_t *data, size_t length, const uint8_t *tag,
               const uint8_t *nonce12, const uint8_t *ad, size_t ad_length);

/// caead_seal and caead_open for an XChaCha20-Poly1305 key: the same, with a 24-byte nonce.
int caead_xseal(const caead_key *key, uint8_t *data, size_t length, uint8_t *tag,
                const uint8_t *nonce24, const uint8_t *ad, size_t ad_length);
int caead_xopen(const caead_key *key, uint8_t *data, size_t length, const uint8_t *tag,
                const uint8_t *nonce24, const uint8_t *ad, size_t ad_length);

#endif
