#!/bin/sh
# Copies the locked Apache ECharts build into the dashboard's assets, which the
# controller compiles into its binary (the dashboard works offline: no CDN).
#   sh vendor.sh          copy node_modules/echarts/dist/echarts.min.js
#   sh vendor.sh --check  fail if the committed copy is not the locked package's
# Both install the locked packages first when they are missing (npm ci).
set -eu
cd "$(dirname "$0")"
from=node_modules/echarts/dist/echarts.min.js
to=../assets/vendor/echarts.min.js

if [ ! -f "$from" ]; then
    npm ci --ignore-scripts --no-audit --no-fund >&2
fi
locked=$(node -p "require('./package-lock.json').packages['node_modules/echarts'].version")
installed=$(node -p "require('./node_modules/echarts/package.json').version")
if [ "$locked" != "$installed" ]; then
    echo "node_modules has echarts $installed but package-lock.json locks $locked: run npm ci here" >&2
    exit 1
fi

case "${1:-}" in
--check)
    if ! cmp -s "$from" "$to"; then
        echo "$to is not echarts $locked's dist/echarts.min.js: run sh crates/dashboard/web/vendor.sh and commit it" >&2
        exit 1
    fi
    echo "$to is echarts $locked"
    ;;
"")
    mkdir -p "$(dirname "$to")"
    cp "$from" "$to"
    echo "copied echarts $locked to $to"
    ;;
*)
    echo "usage: sh vendor.sh [--check]" >&2
    exit 2
    ;;
esac
