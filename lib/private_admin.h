/* Private tracker management, shared by the CLI (`tyto user ...`, `tyto torrent ...`) and the
 * admin HTTP API (lib/admin_api.c): user-name and info_hash checks, passkey generation
 * (libsodium), the exact FCALL argument vectors of the management functions in redis/tyto.lua
 * (one place for their shapes, used with sync and async hiredis alike), a small reader for the
 * flat JSON those functions return and the API receives, and the CLI itself. */
#ifndef TYTO_PRIVATE_ADMIN_H
#define TYTO_PRIVATE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "lib/config.h"

#define PRIVATE_NAME_MAX 64
#define PRIVATE_PASSKEY_LEN 32
#define PRIVATE_HEX_LEN 40
#define PRIVATE_KEY_MAX 256
#define PRIVATE_CALL_MAX_ARGS 12

/* 1 if s is a user name: 1-64 of A-Z a-z 0-9 _ . - */
bool private_valid_name(const char *s);

/* Lowercases a 40-digit hex info_hash into out. 0, or -1 if s is not one. */
int private_parse_hex(const char *s, char out[PRIVATE_HEX_LEN + 1]);

/* A new passkey: 32 chars of [0-9A-Za-z], each drawn with randombytes_uniform. 0 or -1
 * (libsodium failed to initialise). */
int private_new_passkey(char out[PRIVATE_PASSKEY_LEN + 1]);

/* One FCALL of a management function: argv points into the struct's own buffers. */
struct private_call {
    int argc;
    const char *argv[PRIVATE_CALL_MAX_ARGS];
    char keys[3][PRIVATE_KEY_MAX];
    char nums[2][24];
    char args[2][PRIVATE_KEY_MAX];
};

/* Builders: fill c for the named function (prefix = redis.prefix; name, hex and passkey already
 * checked by the caller). field is enabled | can_leech | expires and value "0"/"1" or unix s. */
void private_call_user_add(struct private_call *c, const char *prefix, const char *name,
                           const char *passkey, long long expires, long long now);
void private_call_user_show(struct private_call *c, const char *prefix, const char *name);
void private_call_user_set(struct private_call *c, const char *prefix, const char *name,
                           const char *field, const char *value);
void private_call_user_rekey(struct private_call *c, const char *prefix, const char *name,
                             const char *passkey);
void private_call_user_list(struct private_call *c, const char *prefix);
void private_call_torrent_add(struct private_call *c, const char *prefix, const char *hex, long long now,
                              bool freeleech, bool neutral, const char *up, const char *down);
void private_call_torrent_remove(struct private_call *c, const char *prefix, const char *hex);
void private_call_torrent_show(struct private_call *c, const char *prefix, const char *hex);

/* 1 if s is a multiplier the library accepts: digits, optionally '.' and more digits. */
bool private_valid_multiplier(const char *s);

/* ---- flat JSON ----------------------------------------------------------------------------- */

enum pjson_type { PJSON_STRING, PJSON_NUMBER, PJSON_BOOL, PJSON_NULL };

struct pjson_field {
    char key[32];
    enum pjson_type type;
    char text[PRIVATE_KEY_MAX];     /* string value (unescaped), number text, "true"/"false" */
};

/* Reads one JSON object of scalar members (no nested objects or arrays) at *p (< end), skipping
 * white space; advances *p past it. Fills up to max fields. Returns the number of members, or -1
 * with a reason in err (e.g. "expected ':' at byte 12"). */
int pjson_object(const char **p, const char *end, const char *start, struct pjson_field *f, int max,
                 char *err, size_t errlen);

/* The field named key, or NULL. */
const struct pjson_field *pjson_get(const struct pjson_field *f, int n, const char *key);

/* ---- CLI ----------------------------------------------------------------------------------- */

/* `tyto user ...` and `tyto torrent ...` (argv[0] is "user" or "torrent"): loads the function
 * library with FUNCTION LOAD REPLACE, runs one command, prints the result (human, or the JSON
 * with --json). Returns the exit status: 0, 1 (Redis, not found, exists) or 2 (usage). */
int private_admin_main(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errout);

#endif
