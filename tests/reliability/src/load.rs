//! Measuring helpers of the load suite (`tests/load.rs`, `bench/load.sh`): resident
//! memory of a process, percentiles, and a background RSS sampler.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`);
/// `None` off Linux or when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) process `pid` has used, in ms (`/proc/<pid>/stat`, at the
/// kernel's usual 100 ticks per second); `None` off Linux or when the process is gone.
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10)
}

/// The `p`-th percentile (0..=100, nearest rank) of `v`; sorts `v`. 0 when empty.
pub fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// One RSS sample: time since the sampler started, then KiB per watched process
/// (0 when it could not be read).
pub type Sample = (Duration, Vec<u64>);

/// Samples the RSS of some processes every `every` on a background thread until
/// [`RssSampler::stop`].
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Start sampling `pids`.
    pub fn start(pids: Vec<u32>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s2, v2) = (stop.clone(), samples.clone());
        let join = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !s2.load(Ordering::Relaxed) {
                let row = pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();
                v2.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((t0.elapsed(), row));
                std::thread::sleep(every);
            }
        });
        RssSampler {
            stop,
            samples,
            join: Some(join),
        }
    }

    /// Stop and return the samples, oldest first.
    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// RSS of process column `col` at a fraction (0..=1) of the samples (the sample at
/// that position); 0 when there are none.
pub fn rss_at(samples: &[Sample], col: usize, fraction: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let i = ((samples.len() - 1) as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
    samples[i].1.get(col).copied().unwrap_or(0)
}

/// Peak RSS of column `col`.
pub fn rss_peak(samples: &[Sample], col: usize) -> u64 {
    samples
        .iter()
        .filter_map(|s| s.1.get(col).copied())
        .max()
        .unwrap_or(0)
}

/// Directory of the workspace's binaries for the profile this test was built with
/// (`target/debug` or `target/release`): the parent of the test executable's `deps/`.
pub fn bin_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    Some(deps.parent()?.to_path_buf())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rss() {
        let mut v = vec![5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&mut v, 50.0), 5);
        assert_eq!(percentile(&mut v, 99.0), 10);
        assert_eq!(percentile(&mut v, 0.0), 1);
        assert_eq!(percentile(&mut [], 50.0), 0);
        if cfg!(target_os = "linux") {
            assert!(rss_kib(std::process::id()).unwrap() > 100);
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(60) {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            assert!(x > 0 && cpu_ms(std::process::id()).unwrap() >= 30);
        }
        let s: Vec<Sample> = (0..10)
            .map(|i| (Duration::from_millis(i), vec![i * 10]))
            .collect();
        assert_eq!(rss_at(&s, 0, 1.0 / 3.0), 30);
        assert_eq!(rss_at(&s, 0, 1.0), 90);
        assert_eq!(rss_peak(&s, 0), 90);
    }
}
