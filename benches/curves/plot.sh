#!/usr/bin/env bash
# Draws one curve plot (PNG) from a whitespace-separated data file with gnuplot, for the curve
# scripts in this folder. Owns nothing but the PNG it writes; installs gnuplot-nox when missing
# (Debian). Never fails the measurement that called it: a plot that cannot be drawn is reported
# on stderr and the table stays the result.
#
# Usage: plot.sh OUT.png TITLE XLABEL YLABEL DATA [--logx] [--logy] [--xtic COL] [--zero] COL:LABEL [COL:LABEL...]
#   DATA's first column is x; COL is a 1-based column number; lines starting with # are comments.
#   --xtic COL labels each point's x with column COL's word (configurations instead of numbers).
#   --zero starts the y axes at 0 (figures compared as heights, e.g. one point per configuration).
#   A label ending in " (right)" is drawn against the right-hand axis (y2). Quotes are kept
#   (gnuplot writes one inside a single-quoted string as two).
set -euo pipefail

out=$1 title=$2 xlabel=$3 ylabel=$4 data=$5
shift 5
logx="" logy="" xtic="" cats="" zero=""
series=()
while [ $# -gt 0 ]; do
    a=$1
    shift
    case $a in
        --xtic)
            xtic=":xtic(${1:?--xtic needs a column})"
            cats="set offsets 0.5, 0.5, 0, 0; set xtics rotate by -20"
            shift
            ;;
        --zero) zero="set yrange [0:*]; set y2range [0:*]" ;;
        --logx) logx="set logscale x" ;;
        --logy) logy="set logscale y" ;;
        *) series+=("$a") ;;
    esac
done
if ! command -v gnuplot >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null 2>&1 || true
    fi
fi
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot missing; $out not drawn" >&2; exit 0; }

plots=()
y2=""
for s in "${series[@]}"; do
    col=${s%%:*} label=${s#*:}
    axis="x1y1"
    if [[ $label == *" (right)" ]]; then
        axis="x1y2"
        y2="set y2tics; set ytics nomirror"
    fi
    plots+=("'$data' using 1:$col$xtic with linespoints lw 2 pt 7 axes $axis title '${label//\'/\'\'}'")
done
joined=$(IFS=,; echo "${plots[*]}")
gnuplot <<GP || echo "plot.sh: gnuplot failed; $out not drawn" >&2
set terminal pngcairo size 900,540 font "sans,11"
set output '$out'
set title '${title//\'/\'\'}'
set xlabel '${xlabel//\'/\'\'}'
set ylabel '${ylabel//\'/\'\'}'
set grid
set key left top
$logx
$logy
$y2
$cats
$zero
plot $joined
GP
