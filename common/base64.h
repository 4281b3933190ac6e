/* base64 (RFC 4648, standard alphabet, with padding), for etcd's gateway.
 * Pure functions, any thread. */
#ifndef KURA_COMMON_BASE64_H
#define KURA_COMMON_BASE64_H

#include <stddef.h>

/* Bytes kura_b64_encode() writes for len input bytes, NUL included. */
#define KURA_B64_ENC_LEN(len) (4 * (((len) + 2) / 3) + 1)
/* Bytes kura_b64_decode() may write for len input characters, NUL included. */
#define KURA_B64_DEC_LEN(len) (3 * ((len) / 4) + 1)

/* Encodes len bytes into out (KURA_B64_ENC_LEN(len) bytes), NUL-terminated;
 * returns the length without the NUL. */
size_t kura_b64_encode(const void *in, size_t len, char *out);
/* Decodes len characters into out (KURA_B64_DEC_LEN(len) bytes) and adds a
 * NUL; returns the decoded length, or -1 when the input is not canonical
 * base64 (length not a multiple of 4, a character outside the alphabet,
 * padding anywhere but at the end, non-zero padding bits). */
long kura_b64_decode(const char *in, size_t len, void *out);

/* The value (0-63) of one character of the alphabet, or -1 (padding '='
 * included). For decoders with other rules (iSCSI's lenient padding). */
int kura_b64_sextet(unsigned char c);

#endif
