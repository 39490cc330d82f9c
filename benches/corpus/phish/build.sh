#!/usr/bin/env bash
# Build the phishing development set of the corpus benchmark in the cache (never committed).
#
#   benches/corpus/phish/build.sh          (fetch.sh phish calls it)
#
# $CACHE/phish/real/       real malicious lures shipped as test data in a registry package
#                          (mail-parser 4.8.0 on PyPI, Apache-2.0; see README.md for each file)
# $CACHE/phish/fraud/      real advance-fee fraud from the SpamAssassin corpus (ids in fraud_ids.txt;
#                          needs `fetch.sh sa` first)
# $CACHE/phish/synthetic/  SYNTHETIC messages from generate.py (seed, count, date below), with
#                          manifest.jsonl describing each one
# Idempotent: each part is rebuilt only when its stamp differs (the synthetic stamp includes the
# generator's own hash, so editing the generator rebuilds it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${CORPUS_CACHE:-$HOME/.cache/exogate-corpus}
SEED=${PHISH_SEED:-17}
COUNT=${PHISH_COUNT:-360}
DATE=${PHISH_DATE:-2026-12-01T12:00:00}   # messages are dated up to 2 days before (UTC)

MP_VER="4.8.0"
MP_SDIST="mail_parser-$MP_VER.tar.gz"
MP_SHA256="602e659b159652d378b0f9cce2d682bee692bedae72687786e2b2e52eaeb9afc"
# mail-parser's tests/mails that are real malicious lures (the others are ham, spam or unit cases)
MP_FILES="mail_test_1 mail_test_11 mail_test_15 mail_test_3 mail_test_4"
SEGNO_VER="1.6.6"

say() { printf '%s\n' "$*" >&2; }
die() { say "phish/build.sh: $*"; exit 1; }
mkdir -p "$CACHE/downloads" "$CACHE/phish"

# --- real: mail-parser's test mails ----------------------------------------------------------
real() {
    local dir="$CACHE/phish/real" stamp="mail-parser==$MP_VER $MP_FILES"
    if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$stamp" ]; then
        local sd="$CACHE/downloads/$MP_SDIST"
        if [ ! -f "$sd" ]; then
            say "pip download mail-parser==$MP_VER (sdist: the wheel has no test data)"
            python3 -m pip download --quiet --no-deps --no-binary :all: -d "$CACHE/downloads" "mail-parser==$MP_VER" \
                || die "pip download mail-parser==$MP_VER failed"
        fi
        [ "$(sha256sum < "$sd" | cut -d' ' -f1)" = "$MP_SHA256" ] || die "$sd: SHA-256 differs from $MP_SHA256"
        rm -rf "$dir.new"; mkdir -p "$dir.new"
        local t; t=$(mktemp -d); trap 'rm -rf "$t"' RETURN
        tar -xzf "$sd" -C "$t" "mail_parser-$MP_VER/tests/mails"
        for f in $MP_FILES; do
            cp "$t/mail_parser-$MP_VER/tests/mails/$f" "$dir.new/mail-parser-$MP_VER--$f.eml"
        done
        echo "$stamp" > "$dir.new/.complete"
        rm -rf "$dir"; mv "$dir.new" "$dir"
    fi
    local n; n=$(find "$dir" -name '*.eml' | wc -l)
    [ "$n" = "$(wc -w <<<"$MP_FILES")" ] || die "phish/real: $n messages"
    say "phish/real: $n messages (mail-parser $MP_VER tests/mails)"
}

# --- real: advance-fee fraud from the SpamAssassin corpus ----------------------------------
fraud() {
    local dir="$CACHE/phish/fraud" ids="$HERE/fraud_ids.txt"
    local stamp; stamp=$(sha256sum < "$ids" | cut -d' ' -f1)
    if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$stamp" ]; then
        [ -d "$CACHE/sa/spam" ] || die "the SpamAssassin corpus is missing: run fetch.sh sa first"
        rm -rf "$dir.new"; mkdir -p "$dir.new"
        grep -v '^#' "$ids" | while read -r f; do
            [ -n "$f" ] || continue
            cp "$CACHE/sa/$f" "$dir.new/sa-${f%%/*}--${f##*/}"
        done
        echo "$stamp" > "$dir.new/.complete"
        rm -rf "$dir"; mv "$dir.new" "$dir"
    fi
    local n want; n=$(find "$dir" -name '*.eml' | wc -l); want=$(grep -vc '^#' "$ids")
    [ "$n" = "$want" ] || die "phish/fraud: $n messages, expected $want"
    say "phish/fraud: $n messages (SpamAssassin spam/spam_2, advance-fee fraud)"
}

# --- synthetic ------------------------------------------------------------------------------
synthetic() {
    local dir="$CACHE/phish/synthetic" venv="$CACHE/venv-phish"
    local stamp; stamp="seed=$SEED count=$COUNT date=$DATE segno=$SEGNO_VER $(cat "$HERE/generate.py" "$HERE/mime.py" | sha256sum | cut -c1-16)"
    if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$stamp" ]; then
        if ! "$venv/bin/python" -c "import segno, sys; sys.exit(segno.__version__ != '$SEGNO_VER')" 2>/dev/null; then
            say "venv $venv with segno==$SEGNO_VER"
            python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "segno==$SEGNO_VER" || die "installing segno failed"
        fi
        rm -rf "$dir.new"
        (cd "$HERE" && "$venv/bin/python" generate.py --out "$dir.new" --count "$COUNT" --seed "$SEED" --date "$DATE")
        echo "$stamp" > "$dir.new/.complete"
        rm -rf "$dir"; mv "$dir.new" "$dir"
    fi
    local n; n=$(find "$dir" -name '*.eml' | wc -l)
    [ "$n" = "$COUNT" ] || die "phish/synthetic: $n messages, expected $COUNT"
    say "phish/synthetic: $n messages (SYNTHETIC, seed $SEED)"
}

real
fraud
synthetic
