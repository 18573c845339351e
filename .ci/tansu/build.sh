#!/usr/bin/env bash
# Builds the Kafka-protocol broker the Kafka tests and benchmarks start (tansu 0.6.0, the newest
# release on crates.io) with one fix of ours, and installs it under the root given as $1.
#
# The fix (forming-leave.patch): in tansu 0.6.0, a consumer group that is re-forming keeps a
# member that left as its leader, so every other member's SyncGroup is answered
# REBALANCE_IN_PROGRESS forever and the group never gets its partitions again. A Varpulis
# migration hits it when the new copy of a Kafka pipeline joins the group a moment before the
# old copy leaves (tests/kafka/migration.rs failed that way in CI, 785 of 2,000 records read).
# Real Kafka elects a new leader; the patch makes tansu do the same, as it already does when the
# leader misses its heartbeats.
#
# Usage: .ci/tansu/build.sh ROOT   (installs ROOT/bin/tansu; the in-memory storage needs the
# `dynostore` feature). The crates come through cargo from the same registry as everything else;
# the binary's own Cargo.lock is kept, with only the patched crate's entry changed.
set -euo pipefail
ROOT="$1"
VERSION=0.6.0
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/fetch/src"
cat > "$work/fetch/Cargo.toml" <<TOML
[package]
name = "tansu-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
tansu = "=$VERSION"
TOML
: > "$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch --quiet)

cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
for name in tansu tansu-broker; do
  crate="$(ls "$cache"/*/"$name-$VERSION.crate" | head -n 1)"
  tar xzf "$crate" -C "$work"
done
(cd "$work" && patch -p1 --quiet < "$here/forming-leave.patch")

cat >> "$work/tansu-$VERSION/Cargo.toml" <<TOML

[patch.crates-io]
tansu-broker = { path = "../tansu-broker-$VERSION" }
TOML
# Resolve once against the shipped lock file: only tansu-broker's entry changes (to the path).
(cd "$work/tansu-$VERSION" && cargo metadata --format-version 1 >/dev/null)
cargo install --path "$work/tansu-$VERSION" --locked --features dynostore --root "$ROOT"
