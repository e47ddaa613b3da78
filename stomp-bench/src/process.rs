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

/// What a run cost one server process, or several of one name (the nodes
/// of a cluster) together.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub name: String,
    pub pid: u32,
    /// Every process summed under `name`, when there are several.
    #[serde(skip_serializing_if = "is_one")]
    pub pids: Vec<u32>,
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

fn is_one(pids: &[u32]) -> bool {
    pids.len() < 2
}

/// What the processes of one name spent between two samples of each.
#[derive(Debug, PartialEq)]
struct Spent {
    name: String,
    pids: Vec<u32>,
    cpu: Duration,
    rss_before: u64,
    rss_after: u64,
}

/// Sums each process's samples before and after into one [`Spent`] per
/// name, in the order the names first come.
fn spent_by_name<'p>(
    samples: impl IntoIterator<Item = (&'p ServerProcess, ProcessSample, ProcessSample)>,
) -> Vec<Spent> {
    let mut spent: Vec<Spent> = Vec::new();
    for (process, before, after) in samples {
        let cpu = after.cpu.saturating_sub(before.cpu);
        match spent.iter_mut().find(|spent| spent.name == process.name) {
            Some(spent) => {
                spent.pids.push(process.pid);
                spent.cpu += cpu;
                spent.rss_before += before.rss_bytes;
                spent.rss_after += after.rss_bytes;
            }
            None => spent.push(Spent {
                name: process.name.clone(),
                pids: vec![process.pid],
                cpu,
                rss_before: before.rss_bytes,
                rss_after: after.rss_bytes,
            }),
        }
    }
    spent
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
    /// Processes of one name are summed: a cluster's nodes are one server.
    pub fn usage(&self, units: u64, sessions: Option<u64>) -> Vec<ProcessUsage> {
        let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
        let samples = self
            .started
            .iter()
            .filter_map(|(process, before)| Some((process, (*before)?, process.sample()?)));
        spent_by_name(samples)
            .into_iter()
            .map(|spent| {
                let cpu = spent.cpu.as_secs_f64();
                ProcessUsage {
                    name: spent.name,
                    pid: spent.pids[0],
                    cpu_s: cpu,
                    cpu_us_per_unit: cpu * 1e6 / units.max(1) as f64,
                    rss_before_mib: mib(spent.rss_before),
                    rss_after_mib: mib(spent.rss_after),
                    rss_per_session_kib: sessions.map(|sessions| {
                        (spent.rss_after as f64 - spent.rss_before as f64)
                            / 1024.0
                            / sessions.max(1) as f64
                    }),
                    rss_peak_mib: None,
                    pids: spent.pids,
                }
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
    /// Samples `processes`, those of one name summed at each reading.
    pub fn start(processes: &[ServerProcess]) -> PeakSampler {
        let processes = processes.to_vec();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peaks: Vec<(String, u64)> = Vec::new();
            for process in &processes {
                if !peaks.iter().any(|(name, _)| *name == process.name) {
                    peaks.push((process.name.clone(), 0));
                }
            }
            loop {
                for (name, peak) in &mut peaks {
                    let now: u64 = processes
                        .iter()
                        .filter(|process| process.name == *name)
                        .filter_map(|process| Some(process.sample()?.rss_bytes))
                        .sum();
                    *peak = (*peak).max(now);
                }
                tokio::select! {
                    _ = &mut stopped => return peaks,
                    () = tokio::time::sleep(PEAK_EVERY) => {}
                }
            }
        });
        PeakSampler { stop, task }
    }

    /// Each name and the most bytes its processes held at once.
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
    fn processes_of_one_name_are_summed_in_the_order_names_come() {
        let sample = |cpu_ms, rss_bytes| ProcessSample {
            cpu: Duration::from_millis(cpu_ms),
            rss_bytes,
        };
        let (a, redis, b) = (
            ServerProcess::new("relay", 1),
            ServerProcess::new("redis", 2),
            ServerProcess::new("relay", 3),
        );
        let spent = spent_by_name([
            (&a, sample(100, 10), sample(300, 15)),
            (&redis, sample(0, 5), sample(50, 5)),
            (&b, sample(1_000, 20), sample(1_400, 40)),
        ]);
        assert_eq!(
            spent,
            [
                Spent {
                    name: "relay".to_owned(),
                    pids: vec![1, 3],
                    cpu: Duration::from_millis(600),
                    rss_before: 30,
                    rss_after: 55,
                },
                Spent {
                    name: "redis".to_owned(),
                    pids: vec![2],
                    cpu: Duration::from_millis(50),
                    rss_before: 5,
                    rss_after: 5,
                },
            ]
        );
    }

    #[test]
    fn resident_memory_comes_from_vmrss_in_kib() {
        let status = "Name:\tstomp-relay\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(resident_bytes(status), Some(2 * 1024 * 1024));
        assert_eq!(resident_bytes("Name:\tkthreadd\n"), None);
    }
}
