//! What one scenario run prints: one JSON object on stdout, the same shape
//! for every scenario and server, so that runs can be compared by a script
//! (and by `compare`'s table).

use serde::Serialize;

use crate::client::Target;
use crate::destination::ServerKind;
use crate::latency::LatencySummary;
use crate::process::ProcessUsage;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// What was measured, e.g. `relay-embedded` (`--label`, or the URL).
    pub label: String,
    pub server: ServerKind,
    pub url: String,
    /// Where senders connected, when not to `url`: another node of the
    /// cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_url: Option<String>,
    /// The run's knobs (subscribers, messages, body bytes, ...).
    pub parameters: serde_json::Value,
    /// What `count` and the rates count: `delivery`, `message`, `session`.
    pub unit: &'static str,
    pub count: u64,
    pub elapsed_s: f64,
    pub per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    /// Each server process given: its CPU and memory over the run.
    pub processes: Vec<ProcessUsage>,
    /// The sum over `processes` of CPU microseconds per unit.
    pub cpu_us_per_unit: f64,
    /// The sum over `processes` of memory growth per session (idle runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_session_kib: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// A report of `count` units in `elapsed_s`, with the processes' usage.
    pub fn new(
        scenario: &'static str,
        context: &RunContext,
        parameters: serde_json::Value,
        unit: &'static str,
        count: u64,
        elapsed_s: f64,
        processes: Vec<ProcessUsage>,
    ) -> Report {
        let cpu_us_per_unit = processes.iter().map(|p| p.cpu_us_per_unit).sum();
        let rss_per_session_kib = processes
            .iter()
            .map(|p| p.rss_per_session_kib)
            .sum::<Option<f64>>()
            .filter(|_| !processes.is_empty());
        Report {
            scenario,
            label: context.label.clone(),
            server: context.server,
            url: context.url.clone(),
            send_url: context.send_url.clone(),
            parameters,
            unit,
            count,
            elapsed_s,
            per_second: count as f64 / elapsed_s.max(f64::EPSILON),
            latency: None,
            processes,
            cpu_us_per_unit,
            rss_per_session_kib,
            notes: Vec::new(),
        }
    }

    /// Prints the report as one line of JSON on stdout.
    pub fn print(&self) {
        match serde_json::to_string(self) {
            Ok(line) => println!("{line}"),
            Err(error) => eprintln!("the report cannot be written as JSON: {error}"),
        }
    }
}

/// Who a report is about.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub label: String,
    pub server: ServerKind,
    pub url: String,
    pub send_url: Option<String>,
}

impl RunContext {
    /// A run labelled `label` whose receivers connect to `receiving` and
    /// senders to `sending`.
    pub fn new(label: String, receiving: &Target, sending: &Target) -> RunContext {
        RunContext {
            label,
            server: receiving.server,
            url: receiving.url.clone(),
            send_url: (sending.url != receiving.url).then(|| sending.url.clone()),
        }
    }
}
