//! GraphiQL, the in-browser IDE served at `GET /graphql`: its scripts and
//! stylesheet load from unpkg at exact versions with subresource integrity
//! (the browser refuses a changed byte), its start-up script comes from
//! this binary (`/graphiql.js`), and a content security policy allows
//! nothing else: no inline script, no other origin, no framing. Recompute
//! the hashes with `deploy/local/graphiql-sri.sh` when a version changes.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page: pinned, integrity-checked assets and no inline script.
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>DotMac GraphQL</title>
    <style>body { height: 100%; margin: 0; width: 100%; overflow: hidden; } #graphiql { height: 100vh; }</style>
    <script crossorigin="anonymous" src="https://unpkg.com/react@18.3.1/umd/react.production.min.js"
      integrity="sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z"></script>
    <script crossorigin="anonymous" src="https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js"
      integrity="sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1"></script>
    <link rel="stylesheet" crossorigin="anonymous" href="https://unpkg.com/graphiql@4.1.2/graphiql.min.css"
      integrity="sha384-1el1QShFBnnXTx9x/Cprg82hZWKt0ry29OAYIXt05swbi0KcZDFoj0CWguMpopJr">
  </head>
  <body>
    <div id="graphiql">Loading…</div>
    <script crossorigin="anonymous" src="https://unpkg.com/graphiql@4.1.2/graphiql.min.js"
      integrity="sha384-9XdHu7ajgGJziD4J1zNBKQ842Q/+zZfDv+ib1eMhZWBH6hPAs806x+Jbcf0yNO6B"></script>
    <script src="/graphiql.js"></script>
  </body>
</html>
"#;

/// Starts GraphiQL against this server's `/graphql` (HTTP and WebSocket).
const START: &str = r#"(function () {
  var http = new URL('/graphql', window.location.origin);
  var ws = new URL('/graphql', window.location.origin);
  ws.protocol = ws.protocol === 'https:' ? 'wss:' : 'ws:';
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({ url: http.toString(), subscriptionUrl: ws.toString() }),
      defaultEditorToolsVisibility: true,
    })
  );
})();
"#;

/// What the page may load and do. Styles may be inline: GraphiQL's editor
/// sets them at run time; scripts may not.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
     script-src 'self' https://unpkg.com; \
     style-src 'self' https://unpkg.com 'unsafe-inline'; \
     font-src https://unpkg.com data:; img-src 'self' data:; \
     connect-src 'self' ws: wss:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Headers every GraphiQL response carries.
fn hardened(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// `GET /graphql` from a browser.
pub fn page() -> Response {
    hardened("text/html; charset=utf-8", PAGE)
}

/// `GET /graphiql.js`: the page's start-up script.
pub async fn start_script() -> Response {
    hardened("text/javascript; charset=utf-8", START)
}
