#!/bin/sh
# Builds the raw-floor peer (floor.c) for the marketcast fan-out benchmark.
# Usage: bench/peers/build.sh [OUT]   OUT defaults to bench/peers/floor (next to floor.c).
# Needs only gcc and libc.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/floor"}
gcc -O2 -Wall -Wextra -o "$out" "$here/floor.c"
echo "built $out"
