//! Case statistics (Fallzahlen): how many submissions per Leistung,
//! destination, portal and tenant, and what became of their deliveries, per
//! hour, day, week and month — counts only, never content or names.
//!
//! Both stores keep the counts as they change (triggers in the same
//! transaction as the submission or the delivery's new state), so a query
//! reads a few rows per period instead of the history. This module holds
//! what the stores and the statistics share: the periods, the calendar of
//! the statistics' time zone, and the histogram of times from acceptance to
//! delivery.

use serde::Deserialize;

/// Milliseconds of a day and an hour.
pub const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The periods counts are kept for. Hours are kept per portal (accepted) and
/// per target (outcomes) only, for the dashboard's last days; days, weeks and
/// months with every dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        Some(match s {
            "hour" => Period::Hour,
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            _ => return None,
        })
    }

    /// The number the store keys a period by, for a local day: hours since
    /// 1970 (for `Hour`, of the day's start), else the day number of the
    /// period's first day (weeks start on Monday, ISO 8601).
    pub fn start_of_day(self, day: i64) -> i64 {
        match self {
            Period::Hour => day * 24,
            Period::Day => day,
            Period::Week => day - (day + 3).rem_euclid(7),
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1)
            }
        }
    }

    /// How a period is named in answers: `2026-11-30T14` (local hour),
    /// `2026-11-30`, `2026-W49`, `2026-11`.
    pub fn label(self, start: i64) -> String {
        match self {
            Period::Hour => {
                let (y, m, d) = civil_from_days(start.div_euclid(24));
                format!("{y:04}-{m:02}-{d:02}T{:02}", start.rem_euclid(24))
            }
            Period::Day => {
                let (y, m, d) = civil_from_days(start);
                format!("{y:04}-{m:02}-{d:02}")
            }
            Period::Week => {
                // The ISO year is the year of the week's Thursday.
                let thursday = start + 3;
                let (y, _, _) = civil_from_days(thursday);
                let week = (thursday - days_from_civil(y, 1, 1)) / 7 + 1;
                format!("{y:04}-W{week:02}")
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(start);
                format!("{y:04}-{m:02}")
            }
        }
    }
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A `YYYY-MM-DD` date as a day number.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let day = days_from_civil(y, m, d);
    // Rejects 2026-02-30 and the like.
    (civil_from_days(day) == (y, m, d)).then_some(day)
}

/// The time zone whose days, weeks and months the statistics count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum StatsZone {
    /// Central European time with summer time (the EU rule: from the last
    /// Sunday of March to the last Sunday of October, 01:00 UTC; the rule in
    /// force since 1996, applied to every year).
    #[default]
    #[serde(rename = "Europe/Berlin")]
    EuropeBerlin,
    #[serde(rename = "UTC")]
    Utc,
}

impl StatsZone {
    pub fn name(self) -> &'static str {
        match self {
            StatsZone::EuropeBerlin => "Europe/Berlin",
            StatsZone::Utc => "UTC",
        }
    }

    /// The zone's offsets from UTC as (from ms, offset ms), oldest first,
    /// 1970 to 2100: what the stores convert event times with.
    pub fn transitions(self) -> Vec<(i64, i64)> {
        match self {
            StatsZone::Utc => vec![(0, 0)],
            StatsZone::EuropeBerlin => {
                let mut out = vec![(0, HOUR_MS)];
                for year in 1970..=2100 {
                    let last_sunday = |month: u32| {
                        let end = days_from_civil(year, month, 31);
                        // 1970-01-01 was a Thursday: weekday 0 = Monday.
                        end - ((end + 3).rem_euclid(7) + 1) % 7
                    };
                    out.push((last_sunday(3) * DAY_MS + HOUR_MS, 2 * HOUR_MS));
                    out.push((last_sunday(10) * DAY_MS + HOUR_MS, HOUR_MS));
                }
                out
            }
        }
    }

    /// The offset from UTC at `ms`.
    pub fn offset_at(self, ms: i64) -> i64 {
        self.transitions()
            .iter()
            .rev()
            .find(|(from, _)| *from <= ms)
            .map_or(0, |(_, o)| *o)
    }

    /// The local day number of an instant.
    pub fn day_of(self, ms: i64) -> i64 {
        (ms + self.offset_at(ms)).div_euclid(DAY_MS)
    }
}

/// Upper bounds (ms) of the histogram of times from acceptance to delivery:
/// a 1-2-5 series from 10 ms to 100,000 s (28 hours), and one bucket for
/// everything longer. A median or percentile is estimated inside its bucket.
pub const LATENCY_BOUNDS: [i64; HISTOGRAM - 1] = [
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
];
/// Buckets of the histogram (one more than bounds: the last is open).
pub const HISTOGRAM: usize = 23;

/// The bucket of a time to delivery (ms).
pub fn bucket_of(ms: i64) -> usize {
    LATENCY_BOUNDS.iter().take_while(|b| **b < ms).count()
}

/// What to read: one period's counters in a range of starts, summed over
/// what is not grouped by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseQuery {
    pub period: Period,
    /// Period starts `from..to` (see [`Period::start_of_day`]).
    pub from: i64,
    pub to: i64,
    /// Which of `leistung`, `destination`, `portal`, `target` to keep apart.
    pub group: Vec<&'static str>,
    /// Only `accepted` of these portals (`None`: all).
    pub portals: Option<Vec<String>>,
    /// Only outcomes of these targets (`None`: all).
    pub targets: Option<Vec<String>>,
    /// Most rows answered; more is refused by the caller.
    pub limit: usize,
}

#[cfg(test)]
impl CaseQuery {
    /// Every counter of `period` with starts `from..to`, kept apart by every column.
    pub fn all(period: Period, from: i64, to: i64) -> CaseQuery {
        CaseQuery {
            period,
            from,
            to,
            group: vec!["leistung", "destination", "portal", "target"],
            portals: None,
            targets: None,
            limit: usize::MAX >> 1,
        }
    }
}

/// One row as the stores answer: counters summed per period, event and the
/// grouped columns (the others empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseCount {
    /// The period's start (see [`Period::start_of_day`]).
    pub start: i64,
    /// `accepted`, `delivered`, `parked` or `discarded`.
    pub event: String,
    /// Empty when not grouped by, and for outcomes counted per hour.
    pub portal: String,
    /// Empty when not grouped by, and in hourly counts.
    pub leistung: String,
    pub destination: String,
    /// Empty when not grouped by, and for `accepted`.
    pub target: String,
    pub n: u64,
}

/// The times from acceptance to delivery of one Leistung (empty per hour)
/// and target in one period: how many deliveries fell in each bucket of
/// [`LATENCY_BOUNDS`]. Kept per Leistung and target only: the time depends
/// on the receiver, not on the municipality or the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseLatency {
    pub start: i64,
    pub leistung: String,
    pub target: String,
    pub histogram: [u64; HISTOGRAM],
}

/// What a store answers a [`CaseQuery`] with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseCounts {
    pub counts: Vec<CaseCount>,
    /// Of the period range and the query's targets, every Leistung and target.
    pub latency: Vec<CaseLatency>,
}

/// The SQL of the histogram's columns: `h0, h1, …` with `prefix` before
/// each name and `suffix` after it.
pub fn histogram_columns(prefix: &str, suffix: &str) -> String {
    (0..HISTOGRAM)
        .map(|i| format!("{prefix}h{i}{suffix}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips_and_names_periods() {
        for day in [-1000, 0, 59, 365, 10_957, 20_787, 47_482] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        let day = parse_date("2026-11-30").unwrap();
        assert_eq!(civil_from_days(day), (2026, 11, 30));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(
            parse_date("2024-02-29").map(civil_from_days),
            Some((2024, 2, 29))
        );
        // 2026-11-30 is a Monday of ISO week 49; 2027-01-01 (a Friday) is in 2026-W53.
        assert_eq!(Period::Week.start_of_day(day), day);
        assert_eq!(Period::Week.label(day), "2026-W49");
        let new_year = parse_date("2027-01-01").unwrap();
        assert_eq!(
            Period::Week.label(Period::Week.start_of_day(new_year)),
            "2026-W53"
        );
        assert_eq!(
            Period::Week.label(Period::Week.start_of_day(parse_date("2021-01-03").unwrap())),
            "2020-W53"
        );
        assert_eq!(
            Period::Month.label(Period::Month.start_of_day(day)),
            "2026-11"
        );
        assert_eq!(
            Period::Month.start_of_day(new_year + 40),
            new_year + 31,
            "10 February 2027 is in February"
        );
        assert_eq!(Period::Hour.label(day * 24 + 14), "2026-11-30T14");
    }

    #[test]
    fn berlin_switches_on_the_last_sundays_at_one_utc() {
        let z = StatsZone::EuropeBerlin;
        // 2026: summer time from 29 March to 25 October.
        let march = parse_date("2026-03-29").unwrap() * DAY_MS;
        assert_eq!(z.offset_at(march + HOUR_MS - 1), HOUR_MS);
        assert_eq!(z.offset_at(march + HOUR_MS), 2 * HOUR_MS);
        let october = parse_date("2026-10-25").unwrap() * DAY_MS;
        assert_eq!(z.offset_at(october + HOUR_MS - 1), 2 * HOUR_MS);
        assert_eq!(z.offset_at(october + HOUR_MS), HOUR_MS);
        // 23:30 UTC on 30 June is already 1 July in Berlin, not in UTC.
        let late = parse_date("2026-06-30").unwrap() * DAY_MS + 23 * HOUR_MS + 30 * 60_000;
        assert_eq!(civil_from_days(z.day_of(late)), (2026, 7, 1));
        assert_eq!(civil_from_days(StatsZone::Utc.day_of(late)), (2026, 6, 30));
        // Two switches a year, every year.
        assert_eq!(z.transitions().len(), 1 + 2 * 131);
    }

    #[test]
    fn times_fall_in_their_buckets() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(10), 0);
        assert_eq!(bucket_of(11), 1);
        assert_eq!(bucket_of(1_500), 7);
        assert_eq!(bucket_of(100_000_000), HISTOGRAM - 2);
        assert_eq!(bucket_of(i64::MAX), HISTOGRAM - 1);
        assert!(LATENCY_BOUNDS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            histogram_columns("x.", " = 0").split(", ").count(),
            HISTOGRAM
        );
    }
}
