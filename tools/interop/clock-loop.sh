#!/usr/bin/env bash
# Publisher/subscriber pairs of the reference clock example against a running relay: each pair
# publishes a new broadcast, starts a subscriber 1.2 s later, and counts the subscriber as a
# miss when it never hears the broadcast announced. Both clients are killed after each pair.
#
#   tools/interop/clock-loop.sh CLOCK URL [PAIRS] [VERSION]
#
# CLOCK is the reference project's clock example (moq-dev/moq, rs/moq-native/examples/clock.rs),
# built by hand outside this repository; URL is e.g. moql://127.0.0.1:4443 or
# https://127.0.0.1:4443/anon. Prints one line per miss and "misses M of N" at the end; exits 1
# when anything was missed.
set -u
clock=${1:?clock binary}
url=${2:?relay url}
pairs=${3:-40}
version=${4:-moq-lite-05}
logs=$(mktemp -d)
misses=0
for i in $(seq 1 "$pairs"); do
    name="loop-$$-$i"
    common=(--client-connect "$url" --client-tls-disable-verify --client-version "$version" --broadcast "$name")
    "$clock" "${common[@]}" publish >"$logs/pub-$i.log" 2>&1 &
    publisher=$!
    sleep 1.2
    timeout 4 "$clock" "${common[@]}" subscribe >"$logs/sub-$i.log" 2>&1
    kill "$publisher" 2>/dev/null
    wait "$publisher" 2>/dev/null
    if ! grep -q "broadcast is online" "$logs/sub-$i.log"; then
        misses=$((misses + 1))
        echo "miss: pair $i ($name), logs in $logs/sub-$i.log"
    fi
done
echo "misses $misses of $pairs"
[ "$misses" -eq 0 ]
