//! Time-indexed poses of one frame in another, fed by odometry or TF, looked up with interpolation.

use super::{interpolate, Pose3};
use std::collections::VecDeque;
use thiserror::Error;

/// Tolerances of a [`PoseBuffer`], in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseBufferConfig {
    /// A lookup this far beyond the newest (or before the oldest) sample uses that sample.
    pub tolerance_s: f64,
    /// Two samples further apart than this are not interpolated between.
    pub max_gap_s: f64,
    /// Samples older than this (relative to the newest) are forgotten.
    pub history_s: f64,
    /// A sample this much older than the newest means time went backwards (a looped bag): the buffer
    /// is cleared. Smaller reorderings are sorted in.
    pub backward_jump_s: f64,
}

impl Default for PoseBufferConfig {
    fn default() -> Self {
        PoseBufferConfig { tolerance_s: 0.05, max_gap_s: 1.0, history_s: 30.0, backward_jump_s: 1.0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum LookupError {
    #[error("no pose yet")]
    Empty,
    #[error("pose at {t_ns} ns is newer than the newest sample ({newest_ns} ns)")]
    NotYet { t_ns: i64, newest_ns: i64 },
    #[error("pose at {t_ns} ns is older than the oldest sample kept ({oldest_ns} ns)")]
    TooOld { t_ns: i64, oldest_ns: i64 },
    #[error("pose at {t_ns} ns falls in a {gap_s:.3} s gap between samples")]
    Gap { t_ns: i64, gap_s: f64 },
}

/// What an insertion did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoseInsert {
    Added,
    /// Time went backwards by more than `backward_jump_s`; everything before was dropped.
    TimeJumpedBack { from_ns: i64, to_ns: i64 },
}

#[derive(Debug, Clone)]
pub struct PoseBuffer {
    config: PoseBufferConfig,
    samples: VecDeque<(i64, Pose3)>,
}

impl PoseBuffer {
    pub fn new(config: PoseBufferConfig) -> Self {
        PoseBuffer { config, samples: VecDeque::new() }
    }

    pub fn config(&self) -> &PoseBufferConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn newest_ns(&self) -> Option<i64> {
        self.samples.back().map(|s| s.0)
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    pub fn insert(&mut self, t_ns: i64, pose: Pose3) -> PoseInsert {
        let mut outcome = PoseInsert::Added;
        if let Some(&(newest, _)) = self.samples.back() {
            if (newest - t_ns) as f64 * 1e-9 > self.config.backward_jump_s {
                self.samples.clear();
                outcome = PoseInsert::TimeJumpedBack { from_ns: newest, to_ns: t_ns };
            }
        }
        // keep sorted; samples nearly always arrive in order, so search from the back
        let pos = self.samples.iter().rposition(|s| s.0 <= t_ns).map_or(0, |i| i + 1);
        if pos > 0 && self.samples[pos - 1].0 == t_ns {
            self.samples[pos - 1].1 = pose;
        } else {
            self.samples.insert(pos, (t_ns, pose));
        }
        let newest = self.samples.back().map_or(t_ns, |s| s.0);
        let horizon = newest - (self.config.history_s * 1e9) as i64;
        while self.samples.len() > 2 && self.samples.front().is_some_and(|s| s.0 < horizon) {
            self.samples.pop_front();
        }
        outcome
    }

    pub fn lookup(&self, t_ns: i64) -> Result<Pose3, LookupError> {
        let (&(oldest, first), &(newest, last)) = match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(LookupError::Empty),
        };
        let tolerance = (self.config.tolerance_s * 1e9) as i64;
        if t_ns >= newest {
            return if t_ns - newest <= tolerance { Ok(last) } else { Err(LookupError::NotYet { t_ns, newest_ns: newest }) };
        }
        if t_ns <= oldest {
            return if oldest - t_ns <= tolerance { Ok(first) } else { Err(LookupError::TooOld { t_ns, oldest_ns: oldest }) };
        }
        let after = self.samples.partition_point(|s| s.0 <= t_ns);
        let (t0, p0) = self.samples[after - 1];
        let (t1, p1) = self.samples[after];
        if t0 == t_ns {
            return Ok(p0);
        }
        let gap = (t1 - t0) as f64 * 1e-9;
        if gap > self.config.max_gap_s {
            return Err(LookupError::Gap { t_ns, gap_s: gap });
        }
        Ok(interpolate(&p0, &p1, (t_ns - t0) as f64 / (t1 - t0) as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Isometry3, Vector3};

    fn at(x: f64) -> Pose3 {
        Isometry3::translation(x, 0.0, 0.0)
    }

    #[test]
    fn interpolates_and_respects_tolerances() {
        let mut buf = PoseBuffer::new(PoseBufferConfig::default());
        assert_eq!(buf.lookup(0), Err(LookupError::Empty));
        buf.insert(1_000_000_000, at(1.0));
        buf.insert(1_100_000_000, at(2.0));
        let p = buf.lookup(1_025_000_000).unwrap();
        assert!((p.translation.vector - Vector3::new(1.25, 0.0, 0.0)).norm() < 1e-9);
        assert!(buf.lookup(1_140_000_000).is_ok());
        assert!(matches!(buf.lookup(1_200_000_000), Err(LookupError::NotYet { .. })));
        assert!(matches!(buf.lookup(0), Err(LookupError::TooOld { .. })));
        buf.insert(3_000_000_000, at(5.0));
        assert!(matches!(buf.lookup(2_000_000_000), Err(LookupError::Gap { .. })));
    }

    #[test]
    fn out_of_order_samples_are_sorted_and_loops_reset() {
        let mut buf = PoseBuffer::new(PoseBufferConfig::default());
        buf.insert(2_000_000_000, at(2.0));
        assert_eq!(buf.insert(1_900_000_000, at(1.0)), PoseInsert::Added);
        assert_eq!(buf.len(), 2);
        let p = buf.lookup(1_950_000_000).unwrap();
        assert!((p.translation.vector.x - 1.5).abs() < 1e-9);
        let jump = buf.insert(100, at(0.0));
        assert_eq!(jump, PoseInsert::TimeJumpedBack { from_ns: 2_000_000_000, to_ns: 100 });
        assert_eq!(buf.len(), 1);
    }
}
