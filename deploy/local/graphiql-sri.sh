#!/usr/bin/env bash
# Prints the subresource-integrity hashes of the GraphiQL assets pinned in
# api/src/http/graphiql.rs, computed from the packages in the npm registry
# (unpkg serves the same bytes). Run when a version changes; paste the
# hashes into the page.
set -euo pipefail
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
for spec in react@18.3.1:umd/react.production.min.js \
            react-dom@18.3.1:umd/react-dom.production.min.js \
            graphiql@4.1.2:graphiql.min.js \
            graphiql@4.1.2:graphiql.min.css; do
  pkg="${spec%%:*}"; file="${spec#*:}"
  tarball="$(npm pack "$pkg" --silent | tail -1)"
  mkdir -p "$pkg" && tar xzf "$tarball" -C "$pkg"
  echo "$pkg/$file sha384-$(openssl dgst -sha384 -binary "$pkg/package/$file" | base64 -w0)"
done
