//! What a tier gives an instance in numbers: the namespace's quota (DESIGN
//! §8) and the one container's requests and limits inside it, sized so that a
//! rolling update's extra pod still fits the quota.

use dotmac_schema::ResourceTier;

use crate::Error;

/// A tier's namespace quota and container sizing, in millicores and MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub quota_cpu_millis: u64,
    pub quota_memory_mib: u64,
    pub quota_storage_gib: u64,
    pub request_cpu_millis: u64,
    pub request_memory_mib: u64,
    pub limit_cpu_millis: u64,
    pub limit_memory_mib: u64,
}

/// Pods a rolling update may run at once (one old, one new: maxSurge 1,
/// maxUnavailable 0): every limit times this must fit the quota.
pub const PODS_DURING_ROLLOUT: u64 = 2;

impl Sizing {
    pub fn of(tier: ResourceTier) -> Result<Sizing, Error> {
        let q = tier.quota();
        let cpu = parse_cpu_millis(q.cpu)?;
        let memory = parse_mib(q.memory)?;
        let storage = parse_mib(q.storage)? / 1024;
        Ok(Sizing {
            quota_cpu_millis: cpu,
            quota_memory_mib: memory,
            quota_storage_gib: storage,
            request_cpu_millis: cpu / (2 * PODS_DURING_ROLLOUT),
            request_memory_mib: memory / (2 * PODS_DURING_ROLLOUT),
            limit_cpu_millis: cpu / PODS_DURING_ROLLOUT,
            limit_memory_mib: memory / PODS_DURING_ROLLOUT,
        })
    }

    pub fn cpu(millis: u64) -> String {
        format!("{millis}m")
    }

    pub fn memory(mib: u64) -> String {
        format!("{mib}Mi")
    }
}

/// "500m" → 500, "4" → 4000.
fn parse_cpu_millis(s: &str) -> Result<u64, Error> {
    let bad = || Error::Invalid {
        field: "tier.cpu",
        reason: format!("{s:?} is not a CPU quantity"),
    };
    match s.strip_suffix('m') {
        Some(m) => m.parse().map_err(|_| bad()),
        None => s
            .parse::<u64>()
            .ok()
            .and_then(|c| c.checked_mul(1000))
            .ok_or_else(bad),
    }
}

/// "512Mi" → 512, "2Gi" → 2048.
fn parse_mib(s: &str) -> Result<u64, Error> {
    let bad = || Error::Invalid {
        field: "tier.memory",
        reason: format!("{s:?} is not a binary quantity in Mi or Gi"),
    };
    if let Some(m) = s.strip_suffix("Mi") {
        return m.parse().map_err(|_| bad());
    }
    let g: u64 = s
        .strip_suffix("Gi")
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    g.checked_mul(1024).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_quotas_in_numbers() {
        let micro = Sizing::of(ResourceTier::Micro).unwrap();
        assert_eq!(
            (
                micro.quota_cpu_millis,
                micro.quota_memory_mib,
                micro.quota_storage_gib
            ),
            (500, 512, 5)
        );
        let small = Sizing::of(ResourceTier::Small).unwrap();
        assert_eq!(
            (
                small.quota_cpu_millis,
                small.quota_memory_mib,
                small.quota_storage_gib
            ),
            (1000, 2048, 20)
        );
        let large = Sizing::of(ResourceTier::Large).unwrap();
        assert_eq!(
            (
                large.quota_cpu_millis,
                large.quota_memory_mib,
                large.quota_storage_gib
            ),
            (4000, 8192, 100)
        );
    }

    #[test]
    fn every_tier_fits_a_rollout_inside_its_quota() {
        for tier in ResourceTier::ALL {
            let s = Sizing::of(tier).unwrap();
            assert!(
                s.request_cpu_millis > 0 && s.request_memory_mib > 0,
                "{tier:?}"
            );
            assert!(s.request_cpu_millis <= s.limit_cpu_millis, "{tier:?}");
            assert!(s.request_memory_mib <= s.limit_memory_mib, "{tier:?}");
            assert!(
                s.limit_cpu_millis * PODS_DURING_ROLLOUT <= s.quota_cpu_millis,
                "{tier:?}"
            );
            assert!(
                s.limit_memory_mib * PODS_DURING_ROLLOUT <= s.quota_memory_mib,
                "{tier:?}"
            );
        }
    }

    #[test]
    fn higher_tiers_never_get_less() {
        let sizes: Vec<Sizing> = ResourceTier::ALL
            .iter()
            .map(|t| Sizing::of(*t).unwrap())
            .collect();
        for pair in sizes.windows(2) {
            let (lo, hi) = (pair[0], pair[1]);
            assert!(hi.quota_cpu_millis >= lo.quota_cpu_millis);
            assert!(hi.quota_memory_mib >= lo.quota_memory_mib);
            assert!(hi.quota_storage_gib >= lo.quota_storage_gib);
            assert!(hi.limit_cpu_millis >= lo.limit_cpu_millis);
            assert!(hi.limit_memory_mib >= lo.limit_memory_mib);
            assert!(hi.request_cpu_millis >= lo.request_cpu_millis);
            assert!(hi.request_memory_mib >= lo.request_memory_mib);
        }
    }

    #[test]
    fn quantities_that_are_not_understood_are_refused() {
        assert!(parse_cpu_millis("lots").is_err());
        assert!(parse_mib("5G").is_err());
        assert_eq!(parse_cpu_millis("2").unwrap(), 2000);
    }
}
