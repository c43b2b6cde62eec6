#!/bin/sh
# Writes the C source that embeds redis/tyto.lua (the Redis function library) as the string
# redis_functions_lua, to stdout: one string literal a line, with \ " and ? escaped (? because
# -std=c11 enables trigraphs). The Makefile regenerates storage/redis_functions.c with it whenever
# redis/tyto.lua changes; the generated file is committed so that a checkout builds without it.
#   scripts/lua2c.sh redis/tyto.lua > storage/redis_functions.c
set -eu
src=${1:?usage: lua2c.sh FILE.lua}
printf '%s\n' \
    '/* Generated from redis/tyto.lua by scripts/lua2c.sh (make does it): do not edit by hand.' \
    ' * The Redis function library `tyto` (private tracker mode), loaded by the workers and the CLI' \
    ' * with FUNCTION LOAD REPLACE; see redis/tyto.lua for what it holds. */' \
    '#include "storage/redis_functions.h"' \
    '' \
    'const char redis_functions_lua[] ='
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/	/\\t/g' -e 's/^/    "/' -e 's/$/\\n"/' "$src"
printf '    ;\n'
