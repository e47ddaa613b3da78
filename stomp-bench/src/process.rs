//! The servers' own cost, read from `/proc` on this machine: CPU time
//! (utime + stime in `/proc/<pid>/stat`) and resident memory (`VmRSS` in
//! `/proc/<pid>/status`). Read before and after a run, so that a report
//! gives what the run cost each server process and nothing of the clients.

use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ, which Linux
/// fixes at 100 for user space on every architecture it runs on.
const TICKS_PER_SECOND: u64 = 100;

/// A server process to account for, named as the report names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProcess {
    pub name: String,
    pub pid: u32,
}

/// What `/proc` says about a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    pub cpu: Duration,
    pub rss_bytes: u64,
}

impl ServerProcess {
    pub fn new(name: impl Into<String>, pid: u32) -> ServerProcess {
        ServerProcess {
            name: name.into(),
            pid,
        }
    }

    /// The first process whose command name (`/proc/<pid>/comm`) is `comm`.
    pub fn find(name: &str, comm: &str) -> Option<ServerProcess> {
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        pids.into_iter()
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|found| found.trim_end() == comm)
            })
            .map(|pid| ServerProcess::new(name, pid))
    }

    /// The process's CPU time and memory now; none once it has gone.
    pub fn sample(&self) -> Option<ProcessSample> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        Some(ProcessSample {
            cpu: cpu_time(&stat)?,
            rss_bytes: resident_bytes(&status)?,
        })
    }
}

/// utime + stime of a `/proc/<pid>/stat` line.
pub fn cpu_time(stat: &str) -> Option<Duration> {
    // The command name, field 2, is in parentheses and may hold spaces and
    // parentheses itself: count fields after its last ')'. utime and stime
    // are fields 14 and 15, the 12th and 13th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1_000 / TICKS_PER_SECOND))
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn resident_bytes(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// What a run cost one server process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub name: String,
    pub pid: u32,
    pub cpu_s: f64,
    /// CPU microseconds per unit of the run (message, delivery, session).
    pub cpu_us_per_unit: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    /// Growth of resident memory per session, for runs that hold sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_session_kib: Option<f64>,
    /// The most resident memory seen during the run, for runs that watch it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_peak_mib: Option<f64>,
}

/// The server processes of a run, sampled when it began.
pub struct ProcessWatch {
    started: Vec<(ServerProcess, Option<ProcessSample>)>,
}

impl ProcessWatch {
    pub fn start(processes: &[ServerProcess]) -> ProcessWatch {
        ProcessWatch {
            started: processes
                .iter()
                .map(|process| (process.clone(), process.sample()))
                .collect(),
        }
    }

    /// What each process has spent since [`ProcessWatch::start`], per one
    /// of `units`; with `sessions`, memory growth per session too.
    pub fn usage(&self, units: u64, sessions: Option<u64>) -> Vec<ProcessUsage> {
        let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
        self.started
            .iter()
            .filter_map(|(process, before)| {
                let (before, after) = (before.as_ref()?, process.sample()?);
                let cpu = after.cpu.saturating_sub(before.cpu).as_secs_f64();
                Some(ProcessUsage {
                    name: process.name.clone(),
                    pid: process.pid,
                    cpu_s: cpu,
                    cpu_us_per_unit: cpu * 1e6 / units.max(1) as f64,
                    rss_before_mib: mib(before.rss_bytes),
                    rss_after_mib: mib(after.rss_bytes),
                    rss_per_session_kib: sessions.map(|sessions| {
                        (after.rss_bytes as f64 - before.rss_bytes as f64)
                            / 1024.0
                            / sessions.max(1) as f64
                    }),
                    rss_peak_mib: None,
                })
            })
            .collect()
    }
}

/// How often [`PeakSampler`] reads memory.
const PEAK_EVERY: Duration = Duration::from_millis(50);

/// The highest resident memory of each process while it runs, read every
/// [`PEAK_EVERY`].
pub struct PeakSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(String, u64)>>,
}

impl PeakSampler {
    pub fn start(processes: &[ServerProcess]) -> PeakSampler {
        let processes = processes.to_vec();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peaks: Vec<(String, u64)> =
                processes.iter().map(|p| (p.name.clone(), 0)).collect();
            loop {
                for (process, (_, peak)) in processes.iter().zip(&mut peaks) {
                    if let Some(sample) = process.sample() {
                        *peak = (*peak).max(sample.rss_bytes);
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return peaks,
                    () = tokio::time::sleep(PEAK_EVERY) => {}
                }
            }
        });
        PeakSampler { stop, task }
    }

    /// Each process's name and the most bytes it held.
    pub async fn finish(self) -> Vec<(String, u64)> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_adds_utime_and_stime_after_the_command_name() {
        // A command name with a space and a ')' of its own.
        let stat =
            "1234 (beam.smp) x) S 1 1234 1234 0 -1 4194560 5 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(cpu_time(stat), Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_truncated_stat_line_has_no_cpu_time() {
        assert_eq!(cpu_time("1234 (relay) S 1 2 3"), None);
        assert_eq!(cpu_time("garbage"), None);
    }

    #[test]
    fn resident_memory_comes_from_vmrss_in_kib() {
        let status = "Name:\tstomp-relay\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(resident_bytes(status), Some(2 * 1024 * 1024));
        assert_eq!(resident_bytes("Name:\tkthreadd\n"), None);
    }
}
