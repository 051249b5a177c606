//! Calendar billing periods with an anchor day. Boundaries fall at 00:00
//! UTC on the anchor's day of the month, clamped to the month's last day
//! (anchor Jan 31 → Feb 28 or 29 → Mar 31): each boundary is computed from
//! the anchor, never from the previous boundary, so a short month does not
//! drag later periods earlier. UTC midnight boundaries also fall on the
//! edges of minute, hour and day rollup windows, so a period never splits
//! a window's usage.
//!
//! The arithmetic is fallible: a boundary beyond the dates chrono can
//! represent is `None`, never a fallback that a loop could spin on, and
//! finding the period of a date takes a bounded number of steps.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use dotmac_schema::price::Interval;

/// A billing period: `[start, end)`, both at 00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Period {
    pub fn start_time(&self) -> DateTime<Utc> {
        self.start.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    pub fn end_time(&self) -> DateTime<Utc> {
        self.end.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    pub fn length(&self) -> TimeDelta {
        self.end_time() - self.start_time()
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start_time() <= t && t < self.end_time()
    }
}

/// A subscription's billing calendar: its first period starts at `anchor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub anchor: NaiveDate,
    pub interval: Interval,
}

impl Calendar {
    pub fn new(anchor: NaiveDate, interval: Interval) -> Calendar {
        Calendar { anchor, interval }
    }

    /// The `n`th boundary (`0` is the anchor; negative counts backwards);
    /// `None` beyond the dates chrono represents.
    pub fn boundary(&self, n: i64) -> Option<NaiveDate> {
        let months = n.checked_mul(i64::from(self.interval.months()))?;
        // Month arithmetic on the 1st cannot clamp; the anchor's day is then
        // clamped to the target month's length.
        let first = self.anchor.with_day(1)?;
        let shift = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
        let month = if months >= 0 {
            first.checked_add_months(shift)
        } else {
            first.checked_sub_months(shift)
        }?;
        let day = self.anchor.day().min(days_in_month(month));
        month.with_day(day)
    }

    /// The `n`th period (`0` starts at the anchor).
    pub fn period(&self, n: i64) -> Option<Period> {
        Some(Period {
            start: self.boundary(n)?,
            end: self.boundary(n.checked_add(1)?)?,
        })
    }

    /// The index of the period that contains `date`, if both ends of that
    /// period can be represented.
    pub fn index_of(&self, date: NaiveDate) -> Option<i64> {
        let months = i64::from(date.year() - self.anchor.year()) * 12 + i64::from(date.month())
            - i64::from(self.anchor.month());
        let estimate = months.div_euclid(i64::from(self.interval.months()));
        // The estimate is off by at most one either way (the day of month):
        // three candidates settle it, whatever the dates.
        (estimate - 1..=estimate + 1).find(|&n| {
            self.period(n)
                .is_some_and(|p| p.start <= date && date < p.end)
        })
    }

    /// The period that contains `date`.
    pub fn period_containing(&self, date: NaiveDate) -> Option<Period> {
        self.period(self.index_of(date)?)
    }

    /// The period that starts in `month`'s month (any day of it), if one
    /// does (a quarterly or annual calendar has months without).
    pub fn period_starting_in(&self, month: NaiveDate) -> Option<Period> {
        let first = month.with_day(1)?;
        let mut n = self.index_of(first)?;
        if self.boundary(n)? < first {
            n += 1;
        }
        let p = self.period(n)?;
        (p.start.year() == first.year() && p.start.month() == first.month()).then_some(p)
    }
}

/// Days in the month of `date` (28 to 31).
pub fn days_in_month(date: NaiveDate) -> u32 {
    let first = date.with_day(1).unwrap_or(date);
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    (next - first).num_days() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn month_end_anchors_clamp_and_recover() {
        let c = Calendar::new(date("2027-01-31"), Interval::Monthly);
        let starts: Vec<String> = (0..4).map(|n| c.boundary(n).unwrap().to_string()).collect();
        assert_eq!(
            starts,
            ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
        );
        let leap = Calendar::new(date("2028-01-31"), Interval::Monthly);
        assert_eq!(leap.boundary(1), Some(date("2028-02-29")));
        let feb29 = Calendar::new(date("2028-02-29"), Interval::Annual);
        assert_eq!(feb29.boundary(1), Some(date("2029-02-28")));
        assert_eq!(feb29.boundary(4), Some(date("2032-02-29")));
        let q = Calendar::new(date("2026-11-30"), Interval::Quarterly);
        assert_eq!(q.boundary(1), Some(date("2027-02-28")));
        assert_eq!(q.boundary(2), Some(date("2027-05-30")));
        assert_eq!(
            c.period_containing(date("2027-03-30")),
            Some(Period {
                start: date("2027-02-28"),
                end: date("2027-03-31")
            })
        );
        assert_eq!(c.index_of(date("2026-12-31")), Some(-1));
    }

    #[test]
    fn the_edges_of_representable_time_are_none_not_a_loop() {
        let last = NaiveDate::MAX;
        let c = Calendar::new(last, Interval::Annual);
        assert_eq!(c.boundary(1), None);
        assert_eq!(c.period(0), None);
        assert_eq!(c.index_of(last), None);
        assert_eq!(c.period_containing(last), None);
        assert_eq!(c.period_starting_in(last), None);
        let first = Calendar::new(NaiveDate::MIN, Interval::Monthly);
        assert_eq!(first.boundary(-1), None);
        assert_eq!(first.boundary(i64::MAX), None);
        assert_eq!(first.period(i64::MAX), None);
    }

    fn dates() -> impl Strategy<Value = NaiveDate> {
        (1990i32..2100, 1u32..=12, 1u32..=31).prop_map(|(y, m, d)| {
            let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
            first.with_day(d.min(days_in_month(first))).unwrap()
        })
    }

    fn intervals() -> impl Strategy<Value = Interval> {
        prop_oneof![
            Just(Interval::Monthly),
            Just(Interval::Quarterly),
            Just(Interval::Annual)
        ]
    }

    proptest! {
        /// Periods tile time: each ends where the next starts, every
        /// boundary is on the anchor's day (clamped), and every date lies in
        /// exactly the period `period_containing` names.
        #[test]
        fn periods_tile_on_the_anchor_day(anchor in dates(), interval in intervals(), n in -30i64..30, day in dates()) {
            let c = Calendar::new(anchor, interval);
            let p = c.period(n).unwrap();
            prop_assert_eq!(p.end, c.period(n + 1).unwrap().start);
            prop_assert!(p.start < p.end);
            prop_assert_eq!(p.start.day(), anchor.day().min(days_in_month(p.start)));
            let months = interval.months() as i64;
            let span = p.start.year() as i64 * 12 + p.start.month() as i64;
            let next = p.end.year() as i64 * 12 + p.end.month() as i64;
            prop_assert_eq!(next - span, months);
            let q = c.period_containing(day).unwrap();
            prop_assert!(q.start <= day && day < q.end);
            let len = q.length().num_days();
            match interval {
                Interval::Monthly => prop_assert!((28..=31).contains(&len)),
                Interval::Quarterly => prop_assert!((89..=92).contains(&len)),
                Interval::Annual => prop_assert!((365..=366).contains(&len)),
            }
        }
    }
}
