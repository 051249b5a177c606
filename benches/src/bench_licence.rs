//! Benchmark of issue #15, the verifier library an ISP instance embeds, on
//! one core, each side by side with its floor in the same run:
//!
//! - a boolean feature check (`Checker::enabled`) against a bare `HashMap`
//!   lookup of the same key (figure: ≥ 10M checks/s, ratio reported);
//! - a licence file's verification (`Verifier::verify`: envelope, base64,
//!   ed25519, JSON payload, window, revocation) against raw ed25519
//!   verification of the same signed bytes (figure: ≥ 0.8).
//!
//! Run with `deploy/local/bench-licence.sh`.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use dotmac_licence::sign::Signer;
use dotmac_licence::{
    Checker, Enforcement, Entitlement, EntitlementValue, FeatureGrant, Kind, LicencePayload,
    PluginGrant, Snapshot, Verifier,
};
use ed25519_dalek::{Signature, VerifyingKey};

#[derive(Parser)]
struct Args {
    /// Feature checks per round.
    #[arg(long, default_value_t = 50_000_000)]
    checks: u64,
    /// Licence verifications per round.
    #[arg(long, default_value_t = 20_000)]
    verifications: u64,
    /// Rounds of each side, interleaved; the best round of each is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

const TENANT: &str = "ten_0123456789abcdef0123456789abcdef";
/// DESIGN §8's features: what an instance checks.
const FEATURES: [&str; 8] = [
    "customer_portal",
    "basic_billing",
    "advanced_analytics",
    "api_access",
    "white_labeling",
    "custom_integrations",
    "priority_support",
    "sla_guarantees",
];

fn snapshot() -> Snapshot {
    Snapshot {
        tenant_id: TENANT.into(),
        version: 1,
        issued_at: 0,
        entitlements: FEATURES
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    (*f).to_owned(),
                    Entitlement {
                        value: EntitlementValue::Boolean {
                            enabled: i % 3 != 2,
                        },
                        enforcement: Enforcement::Soft,
                    },
                )
            })
            .collect(),
    }
}

fn licence() -> LicencePayload {
    LicencePayload {
        licence_id: "lic_0001".into(),
        tenant_id: TENANT.into(),
        instance_ids: vec!["ins_7f3c2a9e".into()],
        plugins: vec![PluginGrant {
            plugin: "network-monitoring".into(),
            tier: "professional".into(),
            trial: false,
        }],
        features: FEATURES[..5]
            .iter()
            .map(|f| {
                (
                    (*f).to_owned(),
                    FeatureGrant {
                        enforcement: Enforcement::Hard,
                    },
                )
            })
            .collect(),
        limits: BTreeMap::from([("devices".into(), 500)]),
        issued_at: 0,
        not_before: 0,
        refresh_after: i64::MAX / 4,
        expires_at: i64::MAX / 2,
        grace_until: i64::MAX / 2,
        revocation_seq: 0,
    }
}

/// Checks per second of `check` over the features, `n` times.
fn rate(n: u64, mut check: impl FnMut(&str) -> bool) -> f64 {
    let started = Instant::now();
    let mut allowed = 0u64;
    for i in 0..n {
        let feature = FEATURES[(i % FEATURES.len() as u64) as usize];
        allowed += u64::from(check(black_box(feature)));
    }
    black_box(allowed);
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args = Args::parse();
    let signer = Signer::dev();

    // Feature checks.
    let checker = Checker::new(TENANT, None);
    let snap = signer.sign_json(Kind::Snapshot, &snapshot()).unwrap();
    checker.install(snap.as_bytes()).unwrap();
    let bare: HashMap<String, bool> = snapshot()
        .entitlements
        .iter()
        .map(|(k, e)| (k.clone(), e.grants()))
        .collect();
    for f in FEATURES {
        assert_eq!(checker.enabled(f).allowed, bare[f], "{f}");
    }
    let (mut best_check, mut best_map) = (0f64, 0f64);
    for _ in 0..args.rounds {
        best_check = best_check.max(rate(args.checks, |f| checker.enabled(f).allowed));
        best_map = best_map.max(rate(args.checks, |f| bare.get(f).copied().unwrap_or(false)));
    }

    // Licence verification.
    let file = signer.sign_json(Kind::Licence, &licence()).unwrap();
    let (signed, signature) = file.trim_end().rsplit_once('.').unwrap();
    use base64::Engine;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .unwrap();
    let signature = Signature::from_slice(&signature).unwrap();
    let key = VerifyingKey::from_bytes(&signer.public_key()).unwrap();
    let verifier = Verifier::new(0);
    let (mut best_verify, mut best_raw) = (0f64, 0f64);
    for _ in 0..args.rounds {
        let started = Instant::now();
        for _ in 0..args.verifications {
            let v = verifier
                .verify(black_box(file.as_bytes()), TENANT, None, 1_000)
                .unwrap();
            black_box(v);
        }
        best_verify = best_verify.max(args.verifications as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        for _ in 0..args.verifications {
            // The same strict rules (no small-order keys, canonical S) the
            // verifier applies: raw ed25519 as a verifier should run it.
            key.verify_strict(black_box(signed.as_bytes()), &signature)
                .unwrap();
        }
        best_raw = best_raw.max(args.verifications as f64 / started.elapsed().as_secs_f64());
    }

    println!(
        "licence verifier, one thread, best of {} rounds",
        args.rounds
    );
    println!("  feature check (Checker::enabled): {best_check:>14.0} checks/s");
    println!("  baseline HashMap::get:            {best_map:>14.0} checks/s");
    println!(
        "  ratio check / HashMap:            {:>14.2}",
        best_check / best_map
    );
    println!(
        "  licence verification:             {best_verify:>14.0} files/s ({} bytes)",
        file.len()
    );
    println!("  baseline raw ed25519 verify:      {best_raw:>14.0} signatures/s");
    println!(
        "  ratio verify / raw ed25519:       {:>14.2}",
        best_verify / best_raw
    );
}
