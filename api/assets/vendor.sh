#!/usr/bin/env bash
# Vendors the browser builds of GraphiQL and React into api/assets/vendor/
# (committed, embedded in the api binary by src/http/assets.rs) from the npm
# registry, exactly as package-lock.json pins them. No bundler: the packages'
# own prebuilt UMD files are copied as they are, with their licences.
#
#   bash api/assets/vendor.sh          # refresh api/assets/vendor/
#   bash api/assets/vendor.sh DIR      # write into DIR instead (CI diffs it)
#
# To upgrade: change the version in package.json, `npm install
# --package-lock-only`, run this script, then update the paths in
# graphiql.html (a test checks every /assets/ URL it names is served).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/vendor}"

(cd "$here" && npm ci --silent --no-audit --no-fund --ignore-scripts)

version() { node -p "require('$here/node_modules/$1/package.json').version"; }

# copy PACKAGE FILE...: node_modules/PACKAGE/FILE -> OUT/PACKAGE@VERSION/<basename>
copy() {
  local package="$1"; shift
  local dir="$out/$package@$(version "$package")"
  mkdir -p "$dir"
  for file in "$@" LICENSE; do
    cp "$here/node_modules/$package/$file" "$dir/$(basename "$file")"
  done
}

rm -rf "$out"
mkdir -p "$out"
copy react umd/react.production.min.js
copy react-dom umd/react-dom.production.min.js
copy graphiql graphiql.min.js graphiql.min.css
echo "vendored into $out:"
(cd "$out" && find . -type f | sort)
