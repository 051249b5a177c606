//! Behaviour of the API beyond isolation: validation errors with codes and
//! field paths, nothing written on failure, slugs and conflicts, lockout,
//! token rotation, limits (depth, aliases, body size, rate), pagination, API
//! keys, the audit trail, and Redis fan-out between two API processes.

use serde_json::json;

use crate::isolation::{next_json, subscribe};
use crate::support::{Backend, TestServer, PASSWORD};

const CREATE: &str =
    "mutation($i: CreateTenantInput!) { createTenant(input: $i) { id slug state tier } }";

async fn audit_count(srv: &TestServer) -> usize {
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let a = admin
        .gql(
            "{ auditLog(first: 100) { edges { node { id action } } } }",
            json!({}),
        )
        .await;
    a.data()["auditLog"]["edges"].as_array().unwrap().len()
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let srv = TestServer::start(backend).await;
        let admin = srv.login("admin@demo.dotmac.dev").await;
        let before = audit_count(&srv).await;
        let cases = [
            (json!({ "name": "" }), "input.name"),
            (
                json!({ "name": "Ok Name", "slug": "Bad_Slug" }),
                "input.slug",
            ),
            (json!({ "name": "Ok Name", "slug": "-edge" }), "input.slug"),
            (
                json!({ "name": "Ok Name", "contactEmail": "not-an-email" }),
                "input.contactEmail",
            ),
            (
                json!({ "name": "Ok Name", "resellerId": "ten_nope" }),
                "input.resellerId",
            ),
            (json!({ "name": "!!" }), "input.slug"),
        ];
        for (input, field) in cases {
            let a = admin.gql(CREATE, json!({ "i": input })).await;
            a.expect_code("VALIDATION");
            assert_eq!(a.errors()[0]["extensions"]["field"], field, "{}", a.body);
        }
        // A reseller id that parses but does not exist.
        let a = admin
            .gql(CREATE, json!({ "i": { "name": "Ok Name", "resellerId": "rsl_0123456789abcdef0123456789abcdef" } }))
            .await;
        a.expect_code("NOT_FOUND");
        // Slug derived from the name; a second tenant with the same slug conflicts.
        let ok = admin
            .gql(CREATE, json!({ "i": { "name": "Zephyr Networks, Inc." } }))
            .await;
        assert_eq!(ok.data()["createTenant"]["slug"], "zephyr-networks-inc");
        assert_eq!(ok.data()["createTenant"]["state"], "PENDING");
        assert_eq!(ok.data()["createTenant"]["tier"], "MICRO");
        let dup = admin
            .gql(CREATE, json!({ "i": { "name": "Zephyr Networks Inc" } }))
            .await;
        dup.expect_code("CONFLICT");
        assert_eq!(dup.errors()[0]["extensions"]["field"], "input.slug");
        // Only the one successful mutation (plus the logins) was audited.
        let after = audit_count(&srv).await;
        assert_eq!(
            after - before,
            2,
            "one create and the login of the second count; {backend:?}"
        );
        // An illegal transition names both states and changes nothing.
        let id = ok.data()["createTenant"]["id"].clone();
        let bad = admin
            .gql(
                "mutation($id: ID!) { suspendTenant(id: $id, reason: \"x\") { state } }",
                json!({ "id": id }),
            )
            .await;
        bad.expect_code("VALIDATION");
        let msg = bad.errors()[0]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("suspend") && msg.contains("pending"), "{msg}");
        let missing_reason = admin
            .gql(
                "mutation($id: ID!) { cancelTenant(id: $id, reason: \"  \") { state } }",
                json!({ "id": id }),
            )
            .await;
        missing_reason.expect_code("VALIDATION");
        assert_eq!(missing_reason.errors()[0]["extensions"]["field"], "reason");
        let t = admin
            .gql(
                "query($id: ID!) { tenant(id: $id) { state } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(t.data()["tenant"]["state"], "PENDING");
        // Malformed ids are validation errors, unknown ones NOT_FOUND.
        admin
            .gql("{ tenant(id: \"nope\") { id } }", json!({}))
            .await
            .expect_code("VALIDATION");
        admin
            .gql(
                "{ tenant(id: \"ten_0123456789abcdef0123456789abcdef\") { id } }",
                json!({}),
            )
            .await
            .expect_code("NOT_FOUND");
        // Anonymous callers get UNAUTHENTICATED.
        srv.anonymous()
            .gql("{ tenants { edges { node { id } } } }", json!({}))
            .await
            .expect_code("UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn lockout_after_five_failures() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let anon = srv.anonymous();
    let doc = "mutation($p: String!) { login(email: \"user@comet-wireless.demo\", password: $p) { accessToken } }";
    for _ in 0..5 {
        anon.gql(doc, json!({ "p": "wrong-password!" }))
            .await
            .expect_code("UNAUTHENTICATED");
    }
    let locked = anon.gql(doc, json!({ "p": PASSWORD })).await;
    locked.expect_code("UNAUTHENTICATED");
    // Locked looks exactly like a wrong password: no account oracle.
    assert_eq!(locked.errors()[0]["message"], "invalid email or password");
    // Other accounts are unaffected.
    srv.login("admin@comet-wireless.demo").await;
}

#[tokio::test]
async fn a_strangers_guesses_lock_out_the_stranger_not_the_owner() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let srv = TestServer::start_with(backend, |c| {
            c.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })
        .await;
        let email = "admin@demo.dotmac.dev";
        let attacker = "203.0.113.9";
        for _ in 0..6 {
            let code = login_from(&srv, attacker, email, "guess-guess-guess").await;
            assert_eq!(code.as_deref(), Some("UNAUTHENTICATED"));
        }
        // The attacker's client is locked, even with the right password...
        let code = login_from(&srv, attacker, email, PASSWORD).await;
        assert_eq!(code.as_deref(), Some("UNAUTHENTICATED"), "{backend:?}");
        // ...while the owner, from their own address, signs in.
        assert_eq!(
            login_from(&srv, "198.51.100.7", email, PASSWORD).await,
            None
        );
        // After the first lock (30 min) the attacker gets five more tries,
        // then a lock twice as long: at 31 min past it, still locked.
        srv.clock.advance(chrono::TimeDelta::minutes(31));
        for _ in 0..6 {
            let code = login_from(&srv, attacker, email, "guess-guess-guess").await;
            assert_eq!(code.as_deref(), Some("UNAUTHENTICATED"));
        }
        srv.clock.advance(chrono::TimeDelta::minutes(31));
        let code = login_from(&srv, attacker, email, PASSWORD).await;
        assert_eq!(
            code.as_deref(),
            Some("UNAUTHENTICATED"),
            "{backend:?}: second lock is 60 min"
        );
        srv.clock.advance(chrono::TimeDelta::minutes(30));
        assert_eq!(
            login_from(&srv, attacker, email, PASSWORD).await,
            None,
            "{backend:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_outrun_the_lockout() {
    let srv = TestServer::start(Backend::Postgres).await;
    let doc = "mutation($p: String!) { login(email: \"user@bolt-broadband.demo\", password: $p) { accessToken } }";
    let guesses = (0..12).map(|i| {
        let c = srv.anonymous();
        async move {
            c.gql(doc, json!({ "p": format!("guess-number-{i}") }))
                .await
        }
    });
    for a in futures::future::join_all(guesses).await {
        a.expect_code("UNAUTHENTICATED");
    }
    // Only as many passwords were checked as the lockout allows.
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let log = admin
        .gql("{ auditLog(first: 100, filter: { action: \"auth.login_failed\" }) { edges { node { objectId } } } }", json!({}))
        .await;
    let checked = log.data()["auditLog"]["edges"].as_array().unwrap().len();
    assert!(checked <= 5, "{checked} guesses were checked");
    srv.anonymous()
        .gql(doc, json!({ "p": PASSWORD }))
        .await
        .expect_code("UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_token_cannot_be_rotated_twice_in_parallel() {
    let srv = TestServer::start(Backend::Postgres).await;
    let login = srv
        .anonymous()
        .gql("mutation { login(email: \"admin@acme-fiber.demo\", password: \"test-password-123\") { refreshToken } }", json!({}))
        .await;
    let rt = login.data()["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = "mutation($t: String!) { refreshToken(refreshToken: $t) { refreshToken } }";
    let tries = (0..4).map(|_| {
        let (c, rt) = (srv.anonymous(), rt.clone());
        async move { c.gql(doc, json!({ "t": rt })).await }
    });
    let answers = futures::future::join_all(tries).await;
    let won = answers.iter().filter(|a| a.errors().is_empty()).count();
    assert!(won <= 1, "{won} parallel rotations of one token succeeded");
}

#[tokio::test]
async fn websocket_carries_subscriptions_only() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let mut ws = subscribe(
        &srv.url,
        admin.token.as_deref().unwrap(),
        "mutation { createReseller(input: { name: \"Over A Socket\" }) { id } }",
    )
    .await;
    let answer = next_json(&mut ws).await;
    assert!(
        answer.to_string().contains("only subscriptions"),
        "{answer}"
    );
    let list = admin
        .gql(
            "{ resellers(first: 100) { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert!(!list.body.to_string().contains("Over A Socket"));
}

#[tokio::test]
async fn limits_depth_aliases_body_and_pagination() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let aliases: String = (0..40).map(|i| format!("a{i}: me {{ id }} ")).collect();
    admin
        .gql(&format!("{{ {aliases} }}"), json!({}))
        .await
        .expect_code("VALIDATION");
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(12),
        "} ".repeat(12)
    );
    admin.gql(&deep, json!({})).await.expect_code("VALIDATION");
    let big = "x".repeat(300 * 1024);
    let resp = reqwest::Client::new()
        .post(format!("{}/graphql", srv.url))
        .header("content-type", "application/json")
        .body(json!({ "query": "{ me { id } }", "variables": { "pad": big } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    // Pages of 2 walk every tenant exactly once.
    for i in 0..5 {
        admin
            .gql(
                CREATE,
                json!({ "i": { "name": format!("Paged Tenant {i}") } }),
            )
            .await
            .data();
    }
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let a = admin
            .gql(
                "query($a: String) { tenants(first: 2, after: $a) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }",
                json!({ "a": after }),
            )
            .await;
        let conn = a.data()["tenants"].clone();
        for e in conn["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().to_owned());
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 8);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 8);
    admin
        .gql("{ tenants(first: 1000) { edges { cursor } } }", json!({}))
        .await
        .expect_code("VALIDATION");
    admin
        .gql("{ tenants(first: 0) { edges { cursor } } }", json!({}))
        .await
        .expect_code("VALIDATION");
}

#[tokio::test]
async fn api_keys_are_shown_once_and_authenticate_until_revoked() {
    let srv = TestServer::start(Backend::Postgres).await;
    let a = srv.login("admin@acme-fiber.demo").await;
    let me = a.gql("{ me { tenantId } }", json!({})).await;
    let tenant = me.data()["me"]["tenantId"].clone();
    let created = a
        .gql(
            "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE, LICENSE_READ], name: \"edge\") { apiKey { id prefix scopes lastUsedAt } secret } }",
            json!({ "t": tenant }),
        )
        .await;
    let key = created.data()["createApiKey"].clone();
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(key["apiKey"]["prefix"].as_str().unwrap()));
    assert!(key["apiKey"]["lastUsedAt"].is_null());
    let whoami = |s: String| {
        let url = format!("{}/v1/whoami", srv.url);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(s)
                .send()
                .await
                .unwrap()
        }
    };
    let r = whoami(secret.clone()).await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tenantId"], tenant);
    assert_eq!(
        body["scopes"],
        json!(["license:read", "usage:write"]),
        "stored sorted and deduplicated"
    );
    let listed = a
        .gql(
            "{ apiKeys { edges { node { id prefix lastUsedAt } } } }",
            json!({}),
        )
        .await;
    let node = listed.data()["apiKeys"]["edges"][0]["node"].clone();
    assert!(node["lastUsedAt"].is_string(), "last use recorded: {node}");
    assert!(
        !listed.body.to_string().contains(&secret),
        "the secret is never listed"
    );
    // API keys are service credentials: GraphQL does not accept them at all.
    let k = srv.anonymous().with_token(&secret);
    k.gql(CREATE, json!({ "i": { "name": "From A Key" } }))
        .await
        .expect_code("UNAUTHENTICATED");
    k.gql("{ users { edges { node { email } } } }", json!({}))
        .await
        .expect_code("UNAUTHENTICATED");
    a.gql(
        "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
        json!({ "id": key["apiKey"]["id"] }),
    )
    .await
    .data();
    assert_eq!(whoami(secret.clone()).await.status().as_u16(), 401);
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    assert_eq!(whoami(forged).await.status().as_u16(), 401);
    a.gql(
        "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
        json!({ "id": key["apiKey"]["id"] }),
    )
    .await
    .expect_code("CONFLICT");
}

#[tokio::test]
async fn every_mutation_is_audited_with_its_request_id() {
    let srv = TestServer::start(Backend::Postgres).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let resp = admin
        .http
        .post(format!("{}/graphql", srv.url))
        .bearer_auth(admin.token.as_deref().unwrap())
        .header("x-request-id", "req-audit-1")
        .json(&json!({ "query": "mutation { createTenant(input: { name: \"Audited Co\" }) { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-audit-1");
    let body: serde_json::Value = resp.json().await.unwrap();
    let id = body["data"]["createTenant"]["id"].clone();
    let log = admin
        .gql(
            "query($t: ID!) { auditLog(first: 5, filter: { tenantId: $t }) { edges { node { action actor requestId after } } } }",
            json!({ "t": id }),
        )
        .await;
    let entry = log.data()["auditLog"]["edges"][0]["node"].clone();
    assert_eq!(entry["action"], "tenant.create");
    assert_eq!(entry["requestId"], "req-audit-1");
    assert_eq!(entry["after"], "pending");
    assert!(entry["actor"].as_str().unwrap().starts_with("usr_"));
    // A caller cannot pass for a system job (or smuggle text) in the log.
    for (n, forged) in ["system:dunning", "a b", "x/../y"].into_iter().enumerate() {
        let resp = admin
            .http
            .post(format!("{}/graphql", srv.url))
            .bearer_auth(admin.token.as_deref().unwrap())
            .header("x-request-id", forged)
            .json(&json!({ "query": format!("mutation {{ createTenant(input: {{ name: \"Forged Co {n}\" }}) {{ id }} }}") }))
            .send()
            .await
            .unwrap();
        let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, forged);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let id = body["data"]["createTenant"]["id"].clone();
        let log = admin
            .gql(
                "query($t: ID!) { auditLog(first: 5, filter: { tenantId: $t }) { edges { node { requestId } } } }",
                json!({ "t": id }),
            )
            .await;
        assert_eq!(
            log.data()["auditLog"]["edges"][0]["node"]["requestId"],
            echoed.as_str()
        );
    }
}

#[tokio::test]
async fn per_tenant_rate_limit_answers_429() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.limits.tenant_per_minute = 3;
        c.limits.tenant_burst = 3;
    })
    .await;
    let anon = srv.anonymous();
    let t = anon.login("user@acme-fiber.demo", PASSWORD).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(t.gql("{ me { id } }", json!({})).await.status);
    }
    assert_eq!(&codes[..3], &[200, 200, 200]);
    assert_eq!(codes[3], 429, "{codes:?}");
    // Another tenant has its own budget; platform staff have their own.
    anon.login("user@bolt-broadband.demo", PASSWORD)
        .await
        .gql("{ me { id } }", json!({}))
        .await
        .data();
}

#[tokio::test]
async fn two_api_processes_both_deliver_events_through_redis() {
    let first = TestServer::start(Backend::Postgres).await;
    // A second process: same database and Redis prefix, its own listener.
    let second_app =
        dotmac_api::wiring::production_app((*first.app.config).clone(), first.app.clock.clone())
            .await
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(dotmac_api::wiring::serve(second_app, listener));
    let admin = first.login("admin@demo.dotmac.dev").await;
    let token = admin.token.clone().unwrap();
    let q = "subscription { tenantEvents { tenantId to } }";
    let mut on_first = subscribe(&first.url, &token, q).await;
    let mut on_second = subscribe(&second_url, &token, q).await;
    let created = admin
        .gql(CREATE, json!({ "i": { "name": "Fanout Fiber" } }))
        .await;
    let id = created.data()["createTenant"]["id"].clone();
    for ws in [&mut on_first, &mut on_second] {
        let ev = next_json(ws).await;
        assert_eq!(
            ev["payload"]["data"]["tenantEvents"]["tenantId"], id,
            "{ev}"
        );
        assert_eq!(ev["payload"]["data"]["tenantEvents"]["to"], "PENDING");
    }
}

/// A sign-in from `client` (the server trusts 127.0.0.1 as its proxy):
/// the error code, if any.
async fn login_from(srv: &TestServer, client: &str, email: &str, password: &str) -> Option<String> {
    let resp = reqwest::Client::new()
        .post(format!("{}/graphql", srv.url))
        .header("x-forwarded-for", client)
        .json(&json!({
            "query": "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
            "variables": { "e": email, "p": password },
        }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_account_and_client() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.limits.login_per_minute = 3;
        c.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let wrong = "wrong-password-1";
    for _ in 0..3 {
        let code = login_from(&srv, "1.1.1.1", "admin@acme-fiber.demo", wrong).await;
        assert_eq!(code.as_deref(), Some("UNAUTHENTICATED"));
    }
    // That account from that client waits, even with the right password.
    let code = login_from(&srv, "1.1.1.1", "admin@acme-fiber.demo", PASSWORD).await;
    assert_eq!(code.as_deref(), Some("RATE_LIMITED"));
    // Another account from the same client, and the same account from
    // another client, are not held up by it.
    let code = login_from(&srv, "1.1.1.1", "user@acme-fiber.demo", wrong).await;
    assert_eq!(code.as_deref(), Some("UNAUTHENTICATED"));
    assert_eq!(
        login_from(&srv, "2.2.2.2", "admin@acme-fiber.demo", PASSWORD).await,
        None
    );
}

#[tokio::test]
async fn a_forwarded_address_counts_only_from_a_trusted_proxy() {
    // No trusted proxy: the x-forwarded-for a client sends is its own word,
    // and changing it does not buy a fresh bucket.
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.limits.login_per_minute = 2;
    })
    .await;
    let email = "admin@acme-fiber.demo";
    for client in ["1.1.1.1", "2.2.2.2"] {
        let code = login_from(&srv, client, email, "wrong-password-1").await;
        assert_eq!(code.as_deref(), Some("UNAUTHENTICATED"));
    }
    let code = login_from(&srv, "3.3.3.3", email, "wrong-password-1").await;
    assert_eq!(code.as_deref(), Some("RATE_LIMITED"));
}

#[tokio::test]
async fn meter_definitions_are_validated_and_fixed() {
    let srv = TestServer::start(Backend::Postgres).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let doc = "mutation($i: CreateMeterInput!) { createMeter(input: $i) { id slug aggregation valuePath groupBy window } }";
    let base = json!({ "slug": "api-calls", "name": "API calls", "eventType": "api.call", "aggregation": "SUM", "valuePath": "n", "groupBy": ["route"], "window": "MINUTE" });
    let with = |k: &str, v: serde_json::Value| {
        let mut i = base.clone();
        i[k] = v;
        json!({ "i": i })
    };
    for (vars, field) in [
        (
            with("valuePath", serde_json::Value::Null),
            "input.valuePath",
        ),
        (with("slug", json!("Bad Slug")), "input.slug"),
        (
            with("groupBy", json!(["a", "b", "c", "d", "e", "f"])),
            "input.groupBy",
        ),
        (with("groupBy", json!(["a", "a"])), "input.groupBy"),
        (with("valuePath", json!("a..b")), "input.valuePath"),
        (with("name", json!(" ")), "input.name"),
    ] {
        let a = admin.gql(doc, vars).await;
        a.expect_code("VALIDATION");
        assert_eq!(a.errors()[0]["extensions"]["field"], field, "{}", a.body);
    }
    let ok = admin.gql(doc, json!({ "i": base })).await;
    let m = ok.data()["createMeter"].clone();
    assert_eq!(m["aggregation"], "SUM");
    assert_eq!(m["groupBy"], json!(["route"]));
    assert_eq!(m["window"], "MINUTE");
    admin
        .gql(doc, json!({ "i": base }))
        .await
        .expect_code("CONFLICT");
    // COUNT needs no value path.
    let count = admin
        .gql(
            doc,
            with("aggregation", json!("COUNT"))
                .as_object()
                .map(|o| {
                    let mut v = json!(o);
                    v["i"]["slug"] = json!("api-call-count");
                    v["i"]["valuePath"] = serde_json::Value::Null;
                    v
                })
                .unwrap(),
        )
        .await;
    assert_eq!(
        count.data()["createMeter"]["valuePath"],
        serde_json::Value::Null
    );
    // Archived meters leave the default list but stay readable.
    let id = m["id"].clone();
    admin
        .gql(
            "mutation($id: ID!) { archiveMeter(id: $id, reason: \"replaced\") { archivedAt } }",
            json!({ "id": id }),
        )
        .await
        .data();
    admin
        .gql(
            "mutation($id: ID!) { archiveMeter(id: $id, reason: \"again\") { archivedAt } }",
            json!({ "id": id }),
        )
        .await
        .expect_code("CONFLICT");
    let listed = admin
        .gql("{ meters { edges { node { slug } } } }", json!({}))
        .await;
    assert!(!listed.body.to_string().contains("\"api-calls\""));
    let all = admin
        .gql(
            "{ meters(includeArchived: true) { edges { node { slug } } } }",
            json!({}),
        )
        .await;
    assert!(all.body.to_string().contains("\"api-calls\""));
}

#[tokio::test]
async fn graphiql_loads_only_pinned_integrity_checked_assets() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/graphql", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .expect("a script-src directive");
    assert!(!script_src.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    // Every asset from another origin names an exact version and its hash.
    let external: Vec<&str> = html
        .split('<')
        .filter(|tag| tag.contains("https://"))
        .collect();
    assert!(external.len() >= 4, "{html}");
    for tag in external {
        assert!(tag.contains("integrity=\"sha384-"), "no integrity: <{tag}");
        assert!(tag.contains("crossorigin=\"anonymous\""), "<{tag}");
        let version = tag
            .split('@')
            .nth(1)
            .and_then(|v| v.split('/').next())
            .unwrap_or("");
        assert_eq!(version.split('.').count(), 3, "unpinned: <{tag}");
        assert!(
            version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "unpinned: <{tag}"
        );
    }
    // No inline script: each <script> loads a source.
    for tag in html.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap();
        assert!(open.contains("src="), "inline script: <script{tag}");
    }
    let start = http
        .get(format!("{}/graphiql.js", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 200);
    assert!(start.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(start.headers()["x-content-type-options"], "nosniff");
}
