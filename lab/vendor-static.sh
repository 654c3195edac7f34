#!/usr/bin/env bash
# Vendor the web UI's third-party static files from the npm registry into webui/homelab/web/static/vendor/
# (the pages load them from there: no CDN, and `make run` needs no npm). Run by `make vendor`; the result
# is committed. To move to another version: change VERSION, run with SHA256= (empty) to see the new
# tarball's digest, check it against `npm view uplot@<version> dist.integrity`, pin it here, run again.
#   uPlot (npm package `uplot`): dist/uPlot.iife.min.js, dist/uPlot.min.css and LICENSE -> vendor/uplot/
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/../webui/homelab/web/static/vendor/uplot"
NAME=uplot
VERSION=${VERSION:-1.6.32}
SHA256=${SHA256-4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d}  # of uplot-1.6.32.tgz

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$NAME@$VERSION" >/dev/null)
tarball="$work/$NAME-$VERSION.tgz"
got=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "vendor-static: $NAME-$VERSION.tgz has sha256 $got, expected ${SHA256:-(none pinned)}: not vendored" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE
mkdir -p "$dest"
install -m 0644 "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$work/package/LICENSE" "$dest/"
cat > "$dest/README.md" <<README
# uPlot $VERSION (vendored)

The charts of the dashboard and the service pages (static/charts.js) draw with [uPlot](https://github.com/leeoniya/uPlot)
(MIT, see LICENSE), served from here: no CDN.

- npm package: \`$NAME@$VERSION\`
- tarball sha256: \`$SHA256\`
- files: dist/uPlot.iife.min.js, dist/uPlot.min.css, LICENSE

Written by \`make vendor\` (lab/vendor-static.sh), which runs \`npm pack\`, checks the pinned sha256
and copies these files; to refresh, change VERSION and SHA256 in that script and run it again.
README
echo "vendor-static: $NAME $VERSION -> ${dest#"$here/../"}"
