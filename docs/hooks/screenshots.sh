#!/usr/bin/env bash
# Retakes the documentation's screenshots with headless Chromium (Debian's `chromium`):
#   docs/img/report-headline.png  the headline box of a real sweep's report.html (the verdict: its
#                                 one-sentence summary, id 'verdict-summary', and table, id 'verdict')
#   docs/img/docs-front.png       the front page of the built docs site (what `make docs` writes
#                                 to site/index.html; built here into a temporary folder)
# From the repository root, after `make install` (or any `make` target that installs .venv/):
#   docs/hooks/screenshots.sh                   # runs the embedded default sweep first (`make run`'s
#                                               # job, about 6 min on 2 cores) into $RXSWEEP_SHOTS_STORAGE
#                                               # (default /tmp/rxsweep-shots), then takes both
#   docs/hooks/screenshots.sh SWEEP_DIR         # a finished sweep's folder instead: no sweep is run
#   docs/hooks/screenshots.sh SWEEP_DIR OUT     # the two PNGs into OUT instead of docs/img
# The headline is cut out of the page, not guessed: a copy of report.html shows only the headline
# box, Chromium measures the width its table needs and the box's height (--dump-dom of a page whose
# title a script sets), and the screenshot's window is that size. tests/test_docs_commands.py runs
# this script on the tests' tiny sweep.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
SWEEP=${1:+$(cd "$1" && pwd)}                               # as the caller named them
OUT=$(mkdir -p "${2:-$REPO/docs/img}" && cd "${2:-$REPO/docs/img}" && pwd)
cd "$REPO"
PY=${PYTHON:-$REPO/.venv/bin/python}
CHROMIUM=${CHROMIUM:-chromium}
WIDTH=1280  # the docs site shows its side navigation from 1220 px; the headline is at least as wide

if [ -z "$SWEEP" ]; then  # a new sweep, shots-1, shots-2, ...: the storage's data and shards are reused
  STORAGE=${RXSWEEP_SHOTS_STORAGE:-/tmp/rxsweep-shots}
  K=1
  while [ -e "$STORAGE/sweeps/shots-$K" ]; do K=$((K + 1)); done
  SWEEP=$("$PY" jobs/sweep.py --storage "$STORAGE" --name "shots-$K" | tail -n 1)  # its last line: the folder
fi
REPORT=$SWEEP/report.html
if ! grep -q "id='verdict-summary'" "$REPORT"; then
  echo "screenshots.sh: $REPORT has no verdict (did the sweep's confirmation runs finish?)" >&2
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
shoot() {  # shoot URL WIDTH HEIGHT PNG  (or shoot URL WIDTH HEIGHT --dump-dom: the DOM on stdout)
  local what=("--screenshot=$4")
  [ "$4" = --dump-dom ] && what=(--dump-dom)
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-dev-shm-usage --hide-scrollbars \
    --force-device-scale-factor=1 --user-data-dir="$TMP/profile" --virtual-time-budget=5000 \
    --window-size="$2,$3" "${what[@]}" "$1" 2>/dev/null
}

# (a) the report's headline: everything else on the page hidden; the window as wide as the verdict
# table needs (its cells do not wrap) and as tall as the box at that width, measured by Chromium
sed '$ s|</body></html>$|<style>body > :not(#headline) { display: none; } body { margin: 0; padding: 12px; max-width: none; }</style><script>var h = document.getElementById("headline"), r = h.getBoundingClientRect(), pad = parseFloat(getComputedStyle(h).paddingRight); document.title = "headline:" + Math.ceil(Math.max(innerWidth, r.left + h.scrollWidth + pad + 12)) + "x" + Math.ceil(r.bottom + 12);</script></body></html>|' \
  "$REPORT" > "$TMP/headline.html"
SIZE=${WIDTH}x0
for _ in 1 2 3; do  # wider lines wrap less: measure again at the width measured, until it holds
  MEASURED=$(shoot "file://$TMP/headline.html" "${SIZE%x*}" 3000 --dump-dom | grep -o 'headline:[0-9]*x[0-9]*' | cut -d: -f2)
  [ -n "$MEASURED" ] || { echo "screenshots.sh: Chromium did not measure the headline box" >&2; exit 1; }
  [ "${MEASURED%x*}" = "${SIZE%x*}" ] && break
  SIZE=$MEASURED
done
shoot "file://$TMP/headline.html" "${MEASURED%x*}" "${MEASURED#*x}" "$OUT/report-headline.png"

# (b) the docs site's front page, built as `make docs` builds it (it shows the image just taken
# when OUT is docs/img)
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --quiet --site-dir "$TMP/site"
shoot "file://$TMP/site/index.html" "$WIDTH" 800 "$OUT/docs-front.png"

ls -l "$OUT/report-headline.png" "$OUT/docs-front.png"
