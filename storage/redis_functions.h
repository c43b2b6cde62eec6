/* The Redis function library `tyto` (redis/tyto.lua, Redis >= 7.0) as a C string, for
 * FUNCTION LOAD REPLACE: the private tracker's data-path functions (tyto_lookup, tyto_account,
 * tyto_snatch) and its management functions (tyto_user_*, tyto_torrent_*). The source of truth is
 * redis/tyto.lua; storage/redis_functions.c is generated from it by scripts/lua2c.sh (make). */
#ifndef TYTO_REDIS_FUNCTIONS_H
#define TYTO_REDIS_FUNCTIONS_H

extern const char redis_functions_lua[];

#endif
