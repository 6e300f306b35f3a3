#!/usr/bin/env bash
# Builds the resilience4j test client (fixtures/resilience4j-client) into the cache, outside the
# checkout: $CHAOSLAB_CACHE/java/resilience4j-client-<hash>/ with classes/, lib/*.jar and the
# launcher `run`. <hash> covers the pom, the sources and this script (which writes `run`).
# Idempotent: does nothing when that directory exists. Maven Central through ~/.m2.
# Prints the directory on stdout (only that).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../fixtures/resilience4j-client"
for tool in mvn java; do
  command -v "$tool" >/dev/null || { echo "build-java-client: $tool is not on PATH (JDK 17 and Maven needed)" >&2; exit 1; }
done
cache="${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}"
hash=$(
  cd "$src"
  { find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum; sha256sum <"$here/build-java-client.sh"; } |
    sha256sum | cut -c1-12
)
dir="$cache/java/resilience4j-client-$hash"
if [ -d "$dir" ]; then echo "$dir"; exit 0; fi
mkdir -p "$cache/java"
tmp=$(mktemp -d "$cache/java/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build-java-client: building $dir ..." >&2
# A copy, so that target/ is never left in the checkout.
mkdir "$tmp/src" "$tmp/out"
cp -R "$src/pom.xml" "$src/src" "$tmp/src/"
# The log only on failure: Maven 3.8's -q still prints stray ANSI resets.
if ! mvn -q -B -f "$tmp/src/pom.xml" compile dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp/out/lib" >"$tmp/mvn.log" 2>&1; then
  cat "$tmp/mvn.log" >&2
  echo "build-java-client: mvn failed (above)" >&2
  exit 1
fi
mv "$tmp/src/target/classes" "$tmp/out/classes"
cat >"$tmp/out/run" <<'RUN'
#!/bin/sh
# JAVA_OPTS replaces the default, which keeps a short-lived client's CPU and memory modest.
dir=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086
exec java ${JAVA_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx256m} -cp "$dir/classes:$dir/lib/*" dev.chaoslab.fixture.Resilience4jClient "$@"
RUN
chmod +x "$tmp/out/run"
# Atomic; -T fails rather than nesting when a concurrent build got there first (then use that one).
mv -T "$tmp/out" "$dir" 2>/dev/null || [ -d "$dir" ]
echo "$dir"
