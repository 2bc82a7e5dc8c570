//! The detection algorithm, pure: one step per minute of one series (the calls or the errors of
//! one API in one account and region). Documented with every parameter in `docs/insights.md`;
//! `tests/support/insights_oracle.py` re-implements it independently for the golden tests.
//!
//! Integer sums keep the statistics exact: the mean and standard deviation come from Σx and Σx²
//! of the baseline window, so the live detector (sums from SQL) and [`detect`] (rolling sums)
//! reach bit-identical thresholds.

pub use crate::model::insights::{Open, Window};

/// The detector's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// W: minutes of baseline before the judged minute (silent minutes count as zero).
    pub baseline_minutes: u32,
    /// k: standard deviations above the baseline mean a minute must exceed.
    pub sigma_factor: f64,
    /// m: multiple of the baseline mean a minute must exceed.
    pub mean_factor: f64,
    /// c: count a minute must exceed however quiet the baseline.
    pub min_count: u64,
    /// E: non-anomalous minutes in a row that end an insight.
    pub end_after_minutes: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            baseline_minutes: 10_080,
            sigma_factor: 3.0,
            mean_factor: 2.0,
            min_count: 10,
            end_after_minutes: 3,
        }
    }
}

/// The baseline of a minute: its mean, and the count a minute must exceed to be anomalous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub average: f64,
    pub threshold: f64,
}

/// mean = Σx / W; σ = √(W·Σx² − (Σx)²) / W (population deviation, the radicand exact in
/// integers); threshold = max(mean + k·σ, m·mean, c).
pub fn baseline(params: &Params, window: Window) -> Baseline {
    let minutes = f64::from(params.baseline_minutes);
    let average = window.sum as f64 / minutes;
    let radicand = i128::from(params.baseline_minutes) * i128::from(window.sum_of_squares)
        - i128::from(window.sum) * i128::from(window.sum);
    let sigma = (radicand.max(0) as f64).sqrt() / minutes;
    let threshold = (average + params.sigma_factor * sigma)
        .max(average * params.mean_factor)
        .max(params.min_count as f64);
    Baseline { average, threshold }
}

/// What a step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// The minute `minute` is anomalous and no insight was open.
    Start { minute: i64, baseline_average: f64, insight_average: f64 },
    /// E non-anomalous minutes followed the insight that began at `start`. It lasted `duration`
    /// minutes (start through the last anomalous minute); `insight_average` is its mean count.
    End { start: i64, duration: i64, baseline_average: f64, insight_average: f64 },
}

/// Judges minute `minute` with count `count`. `window` gives the baseline window's sums, or None
/// when the series has less than W minutes of history (then no insight starts). Minutes must be
/// stepped in order, each once.
pub fn step(
    params: &Params,
    open: Option<Open>,
    minute: i64,
    count: i64,
    window: impl FnOnce() -> Option<Window>,
) -> (Option<Open>, Option<Transition>) {
    match open {
        None => {
            let Some(window) = window() else { return (None, None) };
            let baseline = baseline(params, window);
            if count as f64 > baseline.threshold {
                let open = Open {
                    start: minute,
                    baseline_average: baseline.average,
                    threshold: baseline.threshold,
                    insight_sum: count,
                    last_anomalous: minute,
                    quiet_minutes: 0,
                    quiet_sum: 0,
                };
                let start = Transition::Start {
                    minute,
                    baseline_average: baseline.average,
                    insight_average: count as f64,
                };
                (Some(open), Some(start))
            } else {
                (None, None)
            }
        }
        Some(mut open) => {
            if count as f64 > open.threshold {
                // A short lull inside a burst belongs to the insight.
                open.insight_sum += open.quiet_sum + count;
                open.last_anomalous = minute;
                open.quiet_minutes = 0;
                open.quiet_sum = 0;
                return (Some(open), None);
            }
            open.quiet_minutes += 1;
            open.quiet_sum += count;
            if open.quiet_minutes < params.end_after_minutes.max(1) {
                return (Some(open), None);
            }
            let duration = open.last_anomalous - open.start + 1;
            let end = Transition::End {
                start: open.start,
                duration,
                baseline_average: open.baseline_average,
                insight_average: open.insight_sum as f64 / duration as f64,
            };
            (None, Some(end))
        }
    }
}

/// Runs the detector over a whole series (index = minute; the first W minutes only form the
/// baseline). An insight still open at the end of the series yields its Start only.
pub fn detect(params: &Params, series: &[i64]) -> Vec<Transition> {
    let width = params.baseline_minutes as usize;
    let mut transitions = Vec::new();
    let mut open = None;
    let mut window = Window::default();
    for (minute, count) in series.iter().enumerate() {
        if minute > 0 {
            let entering = series[minute - 1];
            window.sum += entering;
            window.sum_of_squares += entering * entering;
        }
        if minute > width {
            let leaving = series[minute - 1 - width];
            window.sum -= leaving;
            window.sum_of_squares -= leaving * leaving;
        }
        let full = minute >= width;
        let (next, transition) = step(params, open, minute as i64, *count, || full.then_some(window));
        open = next;
        transitions.extend(transition);
    }
    transitions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            baseline_minutes: 5,
            sigma_factor: 3.0,
            mean_factor: 2.0,
            min_count: 4,
            end_after_minutes: 2,
        }
    }

    #[test]
    fn a_burst_starts_and_ends_an_insight() {
        let series = [1, 1, 1, 1, 1, 20, 30, 1, 25, 0, 0, 1];
        let found = detect(&params(), &series);
        assert_eq!(
            found,
            vec![
                Transition::Start { minute: 5, baseline_average: 1.0, insight_average: 20.0 },
                // The one-minute lull at 7 is inside the insight; 9 and 10 end it.
                Transition::End { start: 5, duration: 4, baseline_average: 1.0, insight_average: 76.0 / 4.0 },
            ]
        );
    }

    #[test]
    fn nothing_starts_without_a_full_baseline_or_below_the_minimum() {
        assert!(detect(&params(), &[0, 0, 50, 0, 0, 4, 4, 0]).is_empty());
    }

    #[test]
    fn the_threshold_is_the_largest_of_its_three_terms() {
        let p = params();
        assert_eq!(baseline(&p, Window { sum: 0, sum_of_squares: 0 }).threshold, 4.0);
        assert_eq!(baseline(&p, Window { sum: 50, sum_of_squares: 500 }).threshold, 20.0);
        // 5 minutes of 0,0,0,0,50: mean 10, σ 20.
        assert_eq!(baseline(&p, Window { sum: 50, sum_of_squares: 2500 }).threshold, 70.0);
    }
}
