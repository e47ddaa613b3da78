//! What `compare` shares with others in RabbitMQ and Redis: what it leaves
//! there, found and removed, and who else consumes a queue, all with their
//! own command-line tools (`redis-cli`, `rabbitmqctl`), as an operator
//! would check by hand.

use std::process::Command;

use crate::error::BenchError;

/// The standard output of `program args`, or why it failed.
fn output_of(program: &str, args: &[&str]) -> Result<String, BenchError> {
    let failed = |reason: String| BenchError::Tool {
        command: format!("{program} {}", args.join(" ")),
        reason,
    };
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Redis keys beginning with `prefix`.
pub fn redis_keys(redis_url: &str, prefix: &str) -> Result<Vec<String>, BenchError> {
    let pattern = format!("{prefix}*");
    let keys = output_of(
        "redis-cli",
        &["-u", redis_url, "--scan", "--pattern", &pattern],
    )?;
    Ok(keys.lines().map(str::to_owned).collect())
}

/// Deletes the Redis keys beginning with `prefix`; how many there were.
pub fn delete_redis_keys(redis_url: &str, prefix: &str) -> Result<usize, BenchError> {
    let keys = redis_keys(redis_url, prefix)?;
    for chunk in keys.chunks(500) {
        let mut args = vec!["-u", redis_url, "DEL"];
        args.extend(chunk.iter().map(String::as_str));
        output_of("redis-cli", &args)?;
    }
    Ok(keys.len())
}

/// The names of RabbitMQ's queues (in the default virtual host).
pub fn rabbitmq_queues() -> Result<Vec<String>, BenchError> {
    let names = output_of(
        "rabbitmqctl",
        &["-q", "list_queues", "name", "--no-table-headers"],
    )?;
    Ok(names
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect())
}

pub fn delete_rabbitmq_queue(name: &str) -> Result<(), BenchError> {
    output_of("rabbitmqctl", &["-q", "delete_queue", name]).map(drop)
}

/// The consumer tags of queue `queue` (in the default virtual host).
pub fn rabbitmq_consumers(queue: &str) -> Result<Vec<String>, BenchError> {
    let consumers = output_of(
        "rabbitmqctl",
        &[
            "-q",
            "list_consumers",
            "queue_name",
            "consumer_tag",
            "--no-table-headers",
        ],
    )?;
    Ok(consumers
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(name, _)| *name == queue)
        .map(|(_, tag)| tag.trim().to_owned())
        .collect())
}
